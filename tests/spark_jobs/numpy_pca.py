"""The PCA tests' oracle: numpy's SVD of the standardized matrix, which the jobs never compute."""

from __future__ import annotations

import numpy as np


class NumpyPca:
    """Standardize with the sample standard deviation (a constant column becomes zeros), then take
    the singular value decomposition of the standardized matrix itself: the job eigendecomposes a
    covariance it sums in Spark; this never forms one.

    :ivar ratios: the explained variance ratio of every axis, largest first; one per feature, the
        axes beyond the matrix's rank explaining 0.
    :ivar axes: the principal axes as columns, as many as the matrix has rows or features.
    """

    def __init__(self, features: np.ndarray) -> None:
        matrix = features.astype(np.float64)
        std = matrix.std(axis=0, ddof=1)
        safe_std = np.where(std > 0, std, 1.0)
        self.standardized = np.where(std > 0, (matrix - matrix.mean(axis=0)) / safe_std, 0.0)
        _, singular_values, right_vectors = np.linalg.svd(self.standardized, full_matrices=False)
        variances = np.zeros(matrix.shape[1])
        variances[: len(singular_values)] = singular_values**2
        self.ratios = variances / variances.sum()
        self.axes = right_vectors.T
