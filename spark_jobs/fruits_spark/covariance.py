"""The covariance matrix of a column of vectors: summed per partition by numpy on the executors.

Spark ML's PCA fits through RowMatrix, whose eigendecomposition of the 1280 x 1280 covariance runs
in pure-Java LAPACK (F2J) unless the node has a native BLAS that netlib can load: 8 to 16 s on every
run, at any number of images, on the development machine and on an EMR node without one. numpy's
wheels carry OpenBLAS, so the executors sum each partition's ``n``, column sums and Gram matrix
``X^T X`` in it, the driver adds those partial sums, and ``numpy.linalg.eigh`` then takes well under
a second.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

_PARTIAL_SCHEMA = "n long, total binary, gram binary"
MAX_PARTIALS = 16


def covariance_matrix(vectors: DataFrame, column: str, n_features: int) -> np.ndarray:
    """The sample covariance (divided by n - 1) of ``column``'s vectors (ML vectors or arrays), in float64.

    :param n_features: every vector's length; the caller has checked they agree.
    """

    def partial_sums(batches: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        n_rows, total, gram = 0, np.zeros(n_features), np.zeros((n_features, n_features))
        for batch in batches:
            if batch.empty:
                continue
            matrix = np.stack(batch[column].to_numpy()).astype(np.float64, copy=False)
            n_rows += len(matrix)
            total += matrix.sum(axis=0)
            gram += matrix.T @ matrix
        yield pd.DataFrame({"n": [n_rows], "total": [total.tobytes()], "gram": [gram.tobytes()]})

    # One partial sum per partition reaches the driver: as many partitions as cores run them, up to
    # MAX_PARTIALS (13 MB each at 1280 features). The coalesce also narrows what runs before it in the
    # same stage: on a cluster of more than MAX_PARTIALS cores, the pass that first computes (and caches)
    # the vectors uses MAX_PARTIALS of them; a tree reduction of the partials would lift that.
    n_partitions = min(vectors.sparkSession.sparkContext.defaultParallelism, MAX_PARTIALS)
    as_arrays = vectors.select(_as_array(vectors, column).alias(column)).coalesce(n_partitions)
    n_rows, total, gram = 0, np.zeros(n_features), np.zeros((n_features, n_features))
    for partial in as_arrays.mapInPandas(partial_sums, _PARTIAL_SCHEMA).collect():
        n_rows += partial.n
        total += np.frombuffer(partial.total)
        gram += np.frombuffer(partial.gram).reshape(n_features, n_features)
    if n_rows < 2:
        raise ValueError(f"a covariance needs at least 2 vectors, got {n_rows}")
    return (gram - np.outer(total, total) / n_rows) / (n_rows - 1)


def _as_array(vectors: DataFrame, column: str) -> Column:
    """``column`` as an array of doubles, which Arrow hands to pandas as numpy arrays."""
    if vectors.schema[column].dataType.typeName() == "array":
        return F.col(column).cast("array<double>")
    return vector_to_array(F.col(column))


def principal_axes(covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(explained_variance_ratio, axes)`` of a covariance matrix, largest variance first.

    Each axis (a column) is oriented so that its largest-magnitude entry is positive: an
    eigendecomposition's signs are arbitrary, and this keeps reruns and other BLAS builds alike. A
    covariance of only constant features explains nothing: every ratio is 0.
    """
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues, kind="stable")[::-1]
    # A positive semi-definite matrix: what rounds below 0 is 0.
    variances = np.clip(eigenvalues[order], 0.0, None)
    axes = eigenvectors[:, order]
    signs = np.sign(axes[np.argmax(np.abs(axes), axis=0), np.arange(axes.shape[1])])
    axes = axes * np.where(signs == 0, 1.0, signs)
    total = variances.sum()
    ratios = variances / total if total > 0 else np.zeros_like(variances)
    return ratios, axes
