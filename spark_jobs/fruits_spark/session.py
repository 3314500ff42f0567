"""The SparkSession the jobs run in, configured once for both local runs and EMR."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyspark.sql import SparkSession

import fruits_spark

# A Python worker holds one Arrow batch of image bytes while it featurizes them (its decoded images are
# featurized as they come): 64 camera photos are a few hundred MB, 64 Fruits-360 images 300 kB. The
# model's ~4 ms per image dwarfs the cost of a batch, so larger batches would gain nothing.
ARROW_RECORDS_PER_BATCH = 64
# Spark packs the files it reads into partitions by weight, a file weighing its size plus the cost of
# opening it (spark.sql.files.openCostInBytes, 4 MB by default). An image of a few kB weighs about the
# open cost alone, so a partition of MAX_PARTITION_BYTES holds up to IMAGES_PER_PARTITION images; with
# fewer images than that per core, Spark spreads them evenly over the cores instead. Spark's default
# (128 MB, so 32 images) made tasks that spent half their time starting: on Python 3.11 each PySpark
# task first re-reads every zip on the worker's path (pyspark.zip, py4j, --py-files), 0.2-0.5 s
# (CPython gh-103200). The pca job's parquet is split by bytes per core long before 4 GB.
OPEN_COST_BYTES = 4 * 1024 * 1024
IMAGES_PER_PARTITION = 1024
MAX_PARTITION_BYTES = IMAGES_PER_PARTITION * OPEN_COST_BYTES
# To read N named files, Spark first lists them with a Spark job of one task per file, up to 10,000:
# 2,048 images made 2,048 tasks and 8 s on 2 cores, against 1 s for 16 tasks. 16 is one wave on the
# default cluster (2 m5.xlarge core nodes, 8 cores) and still 16 S3 listings at once on a larger one.
LISTING_TASKS = 16


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
        .config("spark.sql.files.openCostInBytes", str(OPEN_COST_BYTES))
        .config("spark.sql.files.maxPartitionBytes", str(MAX_PARTITION_BYTES))
        .config("spark.sql.sources.parallelPartitionDiscovery.parallelism", str(LISTING_TASKS))
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
