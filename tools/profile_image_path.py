"""Where one image's time goes inside a Python worker: each step of the per-image path, alone, on one core.

    python -m tools.profile_image_path [--images 256] [--repeats 3]

`make bench` times whole jobs; this splits the featurization's per-image work the way a Python worker
does it, in one process and one thread, milliseconds per image (medians of ``--repeats``):
decoding and resizing the generated 100x100 JPEGs (fruits_spark.images), LiteRT's MobileNetV2 at batch
1 and 4 (``--weights none``), the frame the UDF hands back (fruits_spark.inference.featurize_contents
beyond decoding and inference), the features' conversion to Arrow as Spark's pandas UDF does it (a
list of float32 per row) and as a fixed-size float32 list, and a parquet write of those rows with
pyarrow (the job's writer is Spark's, in the JVM: this shows the encoding's share, not the JVM's).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tools.bench_jobs import IMAGE_SIZE
from tools.sample_images import generate


def per_image_ms(step: Callable[[], object], n_images: int, repeats: int) -> float:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - started)
    return round(1000 * statistics.median(seconds) / n_images, 3)


def profile(n_images: int, repeats: int) -> dict[str, float]:
    from fruits_spark.images import decode_image
    from fruits_spark.inference import Featurizer, featurize_contents
    from fruits_spark.model import RANDOM, build_keras_model, to_tflite

    tflite = to_tflite(build_keras_model(RANDOM, IMAGE_SIZE))
    with tempfile.TemporaryDirectory() as folder:
        contents = [path.read_bytes() for path in generate(Path(folder), n_images)]
    out = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)
    decoded = np.stack([decode_image(content, IMAGE_SIZE) for content in contents])
    one, four = Featurizer(tflite, num_threads=1, batch_size=1), Featurizer(tflite, num_threads=1, batch_size=4)
    one(decoded[:1])
    four(decoded[:4])
    frame = featurize_contents(contents, one)
    features = list(frame["features"])
    flat = np.concatenate(features)
    fixed_type = pa.list_(pa.float32(), len(features[0]))
    table = pa.table({"features": pa.array(features, type=pa.list_(pa.float32()))})

    def write() -> None:
        with tempfile.TemporaryDirectory() as folder:
            pq.write_table(table, os.path.join(folder, "part.parquet"))

    figures = {
        "decode_and_resize": per_image_ms(
            lambda: [decode_image(c, IMAGE_SIZE, out=out) for c in contents], n_images, repeats
        ),
        "litert_batch_1": per_image_ms(lambda: one(decoded), n_images, repeats),
        "litert_batch_4": per_image_ms(lambda: four(decoded), n_images, repeats),
        "featurize_contents_batch_1": per_image_ms(lambda: featurize_contents(contents, one), n_images, repeats),
        "to_arrow_list_of_float32": per_image_ms(
            lambda: pa.array(features, type=pa.list_(pa.float32())), n_images, repeats
        ),
        "to_arrow_fixed_size_list": per_image_ms(
            lambda: pa.FixedSizeListArray.from_arrays(pa.array(flat), fixed_type.list_size), n_images, repeats
        ),
        "parquet_write_pyarrow": per_image_ms(write, n_images, repeats),
    }
    figures["udf_frame_beyond_decode_and_inference"] = round(
        figures["featurize_contents_batch_1"] - figures["decode_and_resize"] - figures["litert_batch_1"], 3
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="generated images to run through each step (256)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each step; medians reported (3)")
    args = parser.parse_args()
    if args.images < 4 or args.repeats < 1:
        parser.error("--images must be at least 4 and --repeats at least 1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    figures = profile(args.images, args.repeats)
    print(json.dumps({"ms_per_image": figures, "load_average": os.getloadavg()}, indent=2))


if __name__ == "__main__":
    main()
