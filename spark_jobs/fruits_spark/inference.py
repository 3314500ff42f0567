"""Executor-side feature extraction: decode a batch of image bytes and run the compiled model.

Imports no TensorFlow: a Python worker loads the ~9 MB LiteRT model once and keeps it for every
later task and Arrow batch (Spark reuses Python workers), so the per-image cost is decoding and
inference alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from fruits_spark.images import ImageRejectedError, decode_image

# Images per interpreter call. One is the fastest on CPUs: XNNPACK then keeps each layer's activations
# in the core's own cache, which a batch overflows (MobileNetV2 224x224 on one thread of the 2-core
# dev machine: ~310 images/s at 1, ~230 at 16; `make bench` measures the machine at hand).
INFERENCE_BATCH = 1

_FEATURIZERS: dict[tuple[str, int], Featurizer] = {}


class Featurizer:
    """A LiteRT interpreter with a fixed batch shape; a last, short batch is zero-padded.

    :param num_threads: the interpreter's threads. The job passes ``spark.task.cpus`` (1 by default),
        so that concurrent tasks x threads = an executor's cores: one single-threaded interpreter per
        core beats one multi-threaded interpreter for all of them, as decoding runs in parallel too.
    """

    def __init__(self, tflite: bytes, num_threads: int, batch_size: int = INFERENCE_BATCH) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_content=tflite, num_threads=num_threads)
        input_detail = self._interpreter.get_input_details()[0]
        self._input_index = input_detail["index"]
        self.image_size = int(input_detail["shape"][1])
        self._output_index = self._interpreter.get_output_details()[0]["index"]
        self.batch_size = batch_size
        self._interpreter.resize_tensor_input(self._input_index, [batch_size, self.image_size, self.image_size, 3])
        self._interpreter.allocate_tensors()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """``(n, size, size, 3)`` preprocessed images to ``(n, 1280)`` float32 features."""
        outputs = []
        for start in range(0, len(images), self.batch_size):
            chunk = np.ascontiguousarray(images[start : start + self.batch_size], dtype=np.float32)
            n_images = len(chunk)
            if n_images < self.batch_size:
                padding = np.zeros((self.batch_size - n_images, *chunk.shape[1:]), dtype=np.float32)
                chunk = np.concatenate([chunk, padding])
            self._interpreter.set_tensor(self._input_index, chunk)
            self._interpreter.invoke()
            outputs.append(self._interpreter.get_tensor(self._output_index)[:n_images])
        return np.concatenate(outputs) if outputs else np.empty((0, 0), dtype=np.float32)


def cached_featurizer(fingerprint: str, num_threads: int, load_tflite: Callable[[], bytes]) -> Featurizer:
    """The worker's featurizer for this model, built on first use only."""
    key = (fingerprint, num_threads)
    if key not in _FEATURIZERS:
        _FEATURIZERS[key] = Featurizer(load_tflite(), num_threads)
    return _FEATURIZERS[key]


def featurize_contents(contents: Iterable[bytes | ImageRejectedError], featurizer: Featurizer) -> pd.DataFrame:
    """Features for each image's bytes, or the reason it was rejected; one output row per input.

    :param contents: each image's bytes, or the reason it could not be read.

    Each image is decoded straight into one array reused for the whole Arrow batch (a fresh 600 kB
    array per image cost as much in page faults as the decoding itself), and goes to the interpreter
    as soon as INFERENCE_BATCH of them are decoded.
    """
    contents = list(contents)
    features: list[np.ndarray | None] = [None] * len(contents)
    reasons: list[str | None] = [None] * len(contents)
    batch = np.empty((featurizer.batch_size, featurizer.image_size, featurizer.image_size, 3), dtype=np.float32)
    positions: list[int] = []

    def run_batch() -> None:
        for position, vector in zip(positions, featurizer(batch[: len(positions)]), strict=True):
            features[position] = vector
        positions.clear()

    for position, content in enumerate(contents):
        try:
            if isinstance(content, ImageRejectedError):
                raise content
            decode_image(content, featurizer.image_size, out=batch[len(positions)])
        except ImageRejectedError as rejection:
            reasons[position] = str(rejection)
            continue
        positions.append(position)
        if len(positions) == featurizer.batch_size:
            run_batch()
    if positions:
        run_batch()
    return pd.DataFrame({"features": features, "reason": reasons})
