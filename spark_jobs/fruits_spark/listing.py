"""The images a run covers: one listing of ``--images``, and which rows of the features dataset are current.

A row of the features dataset is *current* when an image listed now has its path, size and
modification time: the same file, with the same content, under the same label. Rows of images since
moved, removed or rewritten are stale: the dataset only grows, and every reader keeps the current rows
(:func:`current_rows`), so a PCA never sees an image twice, under an old label, or with old content.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType

from fruits_contract import images_digest
from fruits_spark.errors import JobInputError
from fruits_spark.file_listing import list_files
from fruits_spark.images import Listing, is_image_path, label_of, reject_reason_from_listing
from fruits_spark.storage import HadoopFs

VERSION_COLUMNS = ("path", "size", "modified")
VERSIONS_SCHEMA = StructType(
    [
        StructField("path", StringType(), False),
        StructField("label", StringType(), False),
        StructField("size", LongType(), False),
        StructField("modified", LongType(), False),
    ]
)


def list_images(fs: HadoopFs, images_uri: str, flag: str = "--images") -> Listing:
    """Every image file under ``images_uri`` (any depth, any case of extension); others ignored."""
    kind = fs.input_kind(images_uri, flag)
    if kind is None:
        raise JobInputError(f"{flag} {images_uri} does not exist; pass the folder of <label>/<image> files")
    if kind == "file":
        raise JobInputError(f"{flag} {images_uri} is a file; pass the folder that holds the label folders")
    to_read, rejected, labels, versions = [], {}, {}, {}
    try:
        for entry in list_files(fs, images_uri):
            if not is_image_path(entry.path):
                continue
            labels[entry.path] = label_of(entry.path)
            versions[entry.path] = (entry.size, entry.modified)
            reason = reject_reason_from_listing(entry.path, entry.size)
            if reason is None:
                to_read.append(entry.path)
            else:
                rejected[entry.path] = reason
    except OSError as error:
        raise JobInputError(f"{flag} {images_uri} cannot be listed ({error}); check the URI and access to it") from None
    if not labels:
        raise JobInputError(f"{flag} {images_uri} holds no .jpg, .jpeg or .png files")
    return Listing(to_read=sorted(to_read), rejected=rejected, labels=labels, versions=versions)


def listing_digest(fs: HadoopFs, images_uri: str, listing: Listing) -> str:
    """``fruits_contract.images_digest`` of the listing, paths taken relative to ``images_uri``."""
    root = fs.qualify(images_uri).rstrip("/") + "/"
    return images_digest(
        (path.removeprefix(root), size, modified) for path, (size, modified) in listing.versions.items()
    )


def versions_frame(spark: SparkSession, listing: Listing) -> DataFrame:
    """``path, label, size, modified`` of every listed image."""
    rows = [(path, listing.labels[path], size, modified) for path, (size, modified) in listing.versions.items()]
    return spark.createDataFrame(rows, VERSIONS_SCHEMA)


def current_rows(dataset: DataFrame, listing: DataFrame) -> DataFrame:
    """The rows of ``dataset`` that the listed images still match, labelled as listed now.

    extract_features appends one row per path, size and modification time, so each listed image has
    at most one; the DAG's pca step checks their number against the manifest. The listing is
    broadcast: no shuffle, so the rows keep the dataset's few partitions (a shuffle's 200 would cost
    the PCA's fit a task each per pass).

    :param dataset: features (or rejects) rows with ``path, size, modified``; rows written before
        those columns existed have nulls there and are never current.
    :param listing: :func:`versions_frame` of the images listed now.
    """
    return dataset.drop("label").join(F.broadcast(listing), on=list(VERSION_COLUMNS), how="inner")
