"""The PCA report reviewers read: the variance figures, a CSV export and two plots.

REPORT/explained_variance.json   k, threshold, n_images, n_features, ratios, cumulative
REPORT/pca_features.csv          path, label, pc1..pck
REPORT/cumulative_variance.png   cumulative explained variance, threshold and k marked
REPORT/pca_scatter.png           the first two components, coloured by label
REPORT/separability.json         a logistic regression on the PCA features: hold-out accuracy, per label
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fruits_contract import CSV_REPORT, CUMULATIVE_PLOT, PCA_COLUMN, SCATTER_PLOT, SEPARABILITY_REPORT, VARIANCE_REPORT
from fruits_spark.pca_fit import PcaFit
from fruits_spark.projection import project_on
from fruits_spark.separability import separability
from fruits_spark.storage import HadoopFs, join_uri

SCATTER_POINTS = 5_000
LEGEND_MAX_LABELS = 20


def variance_summary(fit: PcaFit) -> dict:
    return {
        "k": fit.k,
        "threshold": fit.threshold,
        "n_images": fit.n_images,
        "n_features": fit.n_features,
        "explained_variance_ratio": [float(ratio) for ratio in fit.explained_variance_ratio],
        "cumulative": [float(total) for total in fit.cumulative],
    }


def plot_cumulative_variance(fit: PcaFit, dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    components = np.arange(1, fit.n_features + 1)
    figure, axis = plt.subplots(figsize=(8, 5))
    axis.plot(components, fit.cumulative, color="tab:blue", label="cumulative explained variance")
    if fit.threshold is not None:
        axis.axhline(fit.threshold, color="tab:red", linestyle="--", label=f"threshold {fit.threshold:g}")
    axis.axvline(fit.k, color="tab:green", linestyle=":", label=f"k = {fit.k}")
    axis.set(xlabel="number of components", ylabel="cumulative explained variance", ylim=(0, 1.02))
    axis.set_xscale("log")
    axis.set_title(f"PCA of {fit.n_images} images x {fit.n_features} features")
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(dest, dpi=110)
    plt.close(figure)


def plot_scatter(points: pd.DataFrame, dest: Path) -> None:
    """``points`` has columns label, pc1, pc2."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    labels = sorted(points["label"].unique())
    colours = plt.get_cmap("turbo")(np.linspace(0, 1, max(len(labels), 2)))
    figure, axis = plt.subplots(figsize=(8, 6))
    for label, colour in zip(labels, colours, strict=False):
        subset = points[points["label"] == label]
        axis.scatter(subset["pc1"], subset["pc2"], s=8, color=colour, label=label, alpha=0.8)
    axis.set(xlabel="PC1", ylabel="PC2", title=f"First two principal components ({len(points)} images)")
    if len(labels) <= LEGEND_MAX_LABELS:
        axis.legend(fontsize="small", markerscale=2, loc="best")
    figure.tight_layout()
    figure.savefig(dest, dpi=110)
    plt.close(figure)


def scatter_points(scaled: DataFrame, fit: PcaFit) -> pd.DataFrame:
    """A seeded sample of images on the first two axes, whatever k is; projected in Spark, so the
    driver receives two numbers per image rather than the whole standardized vector."""
    fraction = min(1.0, SCATTER_POINTS / fit.n_images)
    plane = project_on(scaled.sample(fraction=fraction, seed=0).limit(SCATTER_POINTS), fit.components[:, :2])
    return plane.select("label", F.col("projected")[0].alias("pc1"), F.col("projected")[1].alias("pc2")).toPandas()


def write_csv(fs: HadoopFs, projected: DataFrame, k: int, report_uri: str) -> None:
    """One CSV file, written by one Spark task (no collect on the driver), then renamed into place."""
    staging = join_uri(report_uri, "_csv_staging")
    columns = [F.col(PCA_COLUMN)[i].alias(f"pc{i + 1}") for i in range(k)]
    projected.select("path", "label", *columns).coalesce(1).write.mode("overwrite").option("header", "true").csv(
        staging
    )
    part = next(entry.path for entry in fs.list_files(staging) if entry.path.rsplit("/", 1)[1].startswith("part-"))
    target = join_uri(report_uri, CSV_REPORT)
    fs.delete(target)
    fs.rename(part, target)
    fs.delete(staging, recursive=True)


def write_report(fs: HadoopFs, fit: PcaFit, projected: DataFrame, scaled: DataFrame, report_uri: str) -> None:
    write_csv(fs, projected, fit.k, report_uri)
    with tempfile.TemporaryDirectory(prefix="fruits-report-") as tmp:
        local = Path(tmp)
        (local / VARIANCE_REPORT).write_text(json.dumps(variance_summary(fit), indent=2))
        (local / SEPARABILITY_REPORT).write_text(json.dumps(separability(projected), indent=2))
        plot_cumulative_variance(fit, local / CUMULATIVE_PLOT)
        plot_scatter(scatter_points(scaled, fit), local / SCATTER_PLOT)
        for name in (VARIANCE_REPORT, SEPARABILITY_REPORT, CUMULATIVE_PLOT, SCATTER_PLOT):
            # Written rather than copyFromLocalFile'd: S3A 3.3.4's copy of a single local file fails
            # ("Cannot get relative path"); the files are small.
            fs.write_bytes(join_uri(report_uri, name), (local / name).read_bytes())
