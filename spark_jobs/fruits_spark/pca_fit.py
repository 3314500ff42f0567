"""A fitted PCA, as the job computes it and the report shows it (neither module imports the other)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PcaFit:
    """A fitted PCA: the whole spectrum, and the k components kept.

    :param explained_variance_ratio: one ratio per component, all ``n_features`` of them.
    :param components: ``n_features x n_features`` principal axes, one per column, in order.
    """

    k: int
    threshold: float | None
    n_images: int
    n_features: int
    explained_variance_ratio: np.ndarray
    components: np.ndarray

    @property
    def cumulative(self) -> np.ndarray:
        return np.cumsum(self.explained_variance_ratio)
