"""Executor-side feature extraction: decode a batch of image bytes and run the compiled model.

Imports no TensorFlow: a Python worker loads the ~9 MB LiteRT model once and keeps it for every
later task and Arrow batch (Spark reuses Python workers), so the per-image cost is inference alone.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from fruits_spark.images import ImageRejectedError, decode_image

# Images per interpreter call; larger batches gain little on CPU and cost memory.
INFERENCE_BATCH = 16

_FEATURIZERS: dict[tuple[str, int], Featurizer] = {}


class Featurizer:
    """A LiteRT interpreter with a fixed batch shape; the last, short batch is zero-padded."""

    def __init__(self, tflite: bytes, num_threads: int, batch_size: int = INFERENCE_BATCH) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_content=tflite, num_threads=num_threads)
        input_detail = self._interpreter.get_input_details()[0]
        self._input_index = input_detail["index"]
        self.image_size = int(input_detail["shape"][1])
        self._output_index = self._interpreter.get_output_details()[0]["index"]
        self._batch_size = batch_size
        self._interpreter.resize_tensor_input(self._input_index, [batch_size, self.image_size, self.image_size, 3])
        self._interpreter.allocate_tensors()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """``(n, size, size, 3)`` preprocessed images to ``(n, 1280)`` float32 features."""
        outputs = []
        for start in range(0, len(images), self._batch_size):
            chunk = images[start : start + self._batch_size]
            padded = np.zeros((self._batch_size, *chunk.shape[1:]), dtype=np.float32)
            padded[: len(chunk)] = chunk
            self._interpreter.set_tensor(self._input_index, padded)
            self._interpreter.invoke()
            outputs.append(self._interpreter.get_tensor(self._output_index)[: len(chunk)].copy())
        return np.concatenate(outputs) if outputs else np.empty((0, 0), dtype=np.float32)


def cached_featurizer(fingerprint: str, num_threads: int, load_tflite: Callable[[], bytes]) -> Featurizer:
    """The worker's featurizer for this model, built on first use only."""
    key = (fingerprint, num_threads)
    if key not in _FEATURIZERS:
        _FEATURIZERS[key] = Featurizer(load_tflite(), num_threads)
    return _FEATURIZERS[key]


def featurize_contents(contents: pd.Series, featurizer: Featurizer) -> pd.DataFrame:
    """Features for each image's bytes, or the reason it was rejected; one output row per input."""
    features: list[np.ndarray | None] = [None] * len(contents)
    reasons: list[str | None] = [None] * len(contents)
    decoded, positions = [], []
    for position, content in enumerate(contents):
        try:
            decoded.append(decode_image(content, featurizer.image_size))
            positions.append(position)
        except ImageRejectedError as rejection:
            reasons[position] = str(rejection)
    if decoded:
        for position, vector in zip(positions, featurizer(np.stack(decoded)), strict=True):
            features[position] = vector
    return pd.DataFrame({"features": features, "reason": reasons})
