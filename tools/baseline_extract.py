"""`make bench`'s baseline: MobileNetV2 features the usual way, to compare the project's job with.

    spark-submit tools/baseline_extract.py --images DIR --features OUT [--image-size 224] [--summary-json F]

The approach of most Spark + Keras featurization examples: the driver builds the Keras model (the
project's seeded random weights, so both jobs compute the same network) and broadcasts its weights;
Spark's binary-file reader loads the images; a pandas UDF rebuilds the Keras MobileNetV2 from the
broadcast weights in each task and calls ``model.predict`` on each Arrow batch of decoded images.
Benchmark code only: no reject handling, no incremental dataset.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, FloatType, StructField, StructType

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
RESULT = StructType([StructField("features", ArrayType(FloatType()))])


def keras_mobilenet_v2(image_size: int, weights: list[np.ndarray] | None = None):  # a keras.Model
    import keras

    model = keras.applications.MobileNetV2(
        input_shape=(image_size, image_size, 3), include_top=False, weights=None, pooling="avg"
    )
    if weights is not None:
        model.set_weights(weights)
    return model


def decode(content: bytes, image_size: int) -> np.ndarray:
    from keras.applications.mobilenet_v2 import preprocess_input
    from PIL import Image

    with Image.open(io.BytesIO(content)) as image:
        pixels = np.asarray(image.convert("RGB").resize((image_size, image_size)), dtype=np.float32)
    return preprocess_input(pixels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True)
    parser.add_argument("--features", required=True)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--summary-json")
    args = parser.parse_args()
    started = time.monotonic()
    spark = SparkSession.builder.appName("baseline_extract").getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    seconds: dict[str, float] = {"session_start": time.monotonic() - started}

    from fruits_spark.model import randomize_weights

    phase = time.monotonic()
    model = keras_mobilenet_v2(args.image_size)
    randomize_weights(model)
    weights = spark.sparkContext.broadcast(model.get_weights())
    seconds["model"] = time.monotonic() - phase
    image_size = args.image_size

    @F.pandas_udf(RESULT)
    def featurize(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        worker_model = keras_mobilenet_v2(image_size, weights.value)
        for contents in batches:
            images = np.stack([decode(content, image_size) for content in contents])
            yield pd.DataFrame({"features": list(worker_model.predict(images, verbose=0))})

    phase = time.monotonic()
    images = (
        spark.read.format("binaryFile")
        .option("recursiveFileLookup", "true")
        .option("pathGlobFilter", "*.jpg")
        .load(args.images)
    )
    images = images.repartition(spark.sparkContext.defaultParallelism)
    features = images.select("path", featurize("content")["features"].alias("features"))
    features.write.mode("overwrite").parquet(args.features)
    seconds["featurize_and_write"] = time.monotonic() - phase
    n_featurized = spark.read.parquet(args.features).count()
    phase = time.monotonic()
    spark.stop()
    seconds["session_stop"] = time.monotonic() - phase
    seconds["total"] = time.monotonic() - started
    if args.summary_json:
        summary = {"job": "baseline_extract", "n_featurized": n_featurized, "seconds": seconds}
        Path(args.summary_json).write_text(json.dumps(summary, indent=2) + "\n")
    print(f"baseline_extract: featurized {n_featurized} images in {seconds['total']:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
