"""The SparkSession the jobs run in, configured once for both local runs and EMR."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyspark.sql import SparkSession

import fruits_spark

# Rows per Arrow batch. A Python worker holds the bytes of two batches of images (one being featurized,
# the next being fetched): 128 camera photos are a few hundred MB, 128 Fruits-360 images 600 kB. The
# model's ~4 ms per image dwarfs the cost of a batch, so larger batches would gain nothing.
ARROW_RECORDS_PER_BATCH = 64


def _source_checkout_dir() -> str | None:
    """The folder holding ``fruits_spark`` when it is imported from source rather than from the zip."""
    package_parent = Path(fruits_spark.__file__).resolve().parent.parent
    return str(package_parent) if package_parent.is_dir() else None


def configure(builder: SparkSession.Builder, app_name: str) -> SparkSession.Builder:
    """Apply the jobs' settings to a session builder (also used by the tests' session).

    On a cluster the package arrives with ``--py-files``. Run from a checkout without it, the local
    executors find it on the driver's own disk through their PYTHONPATH instead.
    """
    builder = (
        builder.appName(app_name)
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(ARROW_RECORDS_PER_BATCH))
        .config("spark.sql.session.timeZone", "UTC")
    )
    checkout_dir = _source_checkout_dir()
    if checkout_dir is not None:
        python_path = os.pathsep.join(filter(None, [checkout_dir, os.environ.get("PYTHONPATH")]))
        builder = builder.config("spark.executorEnv.PYTHONPATH", python_path)
    return builder


@contextmanager
def spark_session(app_name: str) -> Iterator[SparkSession]:
    """A session for one job run, stopped on the way out whatever happened."""
    spark = configure(SparkSession.builder, app_name).getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    try:
        yield spark
    finally:
        spark.stop()
