"""extract_features on a local SparkSession: schema, labels, rejects, incrementality, Keras parity."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fruits_contract import images_digest
from fruits_spark.errors import JobInputError
from fruits_spark.extract_features import (
    ExtractConfig,
    ExtractSummary,
    image_frame,
    known_versions,
    parse_args,
    run,
)
from fruits_spark.images import Listing, decode_image
from fruits_spark.model import FEATURE_LENGTH, CompiledModel, build_keras_model
from fruits_spark.storage import HadoopFs
from tools.sample_images import generate


def _config(images: Path, out: Path, image_size: int) -> ExtractConfig:
    return parse_args(
        [
            "--images",
            str(images),
            "--features",
            str(out / "features"),
            "--weights",
            "none",
            "--image-size",
            str(image_size),
        ]
    )


def _uri(path: Path) -> str:
    return f"file:{path}"


@pytest.fixture(scope="module")
def first_run(
    spark: SparkSession, image_tree: dict, random_model: CompiledModel, image_size: int, tmp_path_factory
) -> tuple[ExtractConfig, ExtractSummary]:
    out = tmp_path_factory.mktemp("first-run")
    config = _config(image_tree["root"], out, image_size)
    return config, run(spark, config, random_model)


@pytest.fixture(scope="module")
def features(spark: SparkSession, first_run: tuple[ExtractConfig, ExtractSummary]) -> DataFrame:
    return spark.read.parquet(first_run[0].features)


@pytest.fixture(scope="module")
def rejects(spark: SparkSession, first_run: tuple[ExtractConfig, ExtractSummary]) -> dict[str, str]:
    return {row.path: row.reason for row in spark.read.parquet(first_run[0].rejects).collect()}


def test_features_have_the_contract_schema(features: DataFrame) -> None:
    assert [(field.name, field.dataType.simpleString()) for field in features.schema] == [
        ("path", "string"),
        ("label", "string"),
        ("features", "array<float>"),
        ("size", "bigint"),
        ("modified", "bigint"),
    ]
    lengths = {row[0] for row in features.selectExpr("size(features)").distinct().collect()}
    assert lengths == {FEATURE_LENGTH}


def test_every_valid_image_is_featurized_once(features: DataFrame, image_tree: dict) -> None:
    valid = [*image_tree["good"], *image_tree["odd"].values()]

    paths = [row.path for row in features.select("path").collect()]

    assert sorted(paths) == sorted(_uri(path) for path in valid)


def test_labels_are_the_parent_folder_names(features: DataFrame, image_tree: dict) -> None:
    labels = {row.path: row.label for row in features.collect()}

    assert labels[_uri(image_tree["good"][0])] == "Apple Red 1"
    assert labels[_uri(image_tree["odd"]["nested"])] == "Apple Red 1"
    assert labels[_uri(image_tree["odd"]["upper_case"])] == "Banana"


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("empty", "empty file"),
        ("truncated", "truncated or corrupt"),
        ("not_an_image", "not an image"),
        ("hidden", "hidden file name"),
    ],
)
def test_each_bad_file_is_rejected_with_its_reason(
    rejects: dict[str, str], image_tree: dict, kind: str, reason: str
) -> None:
    assert reason in rejects[_uri(image_tree["bad"][kind])]


def test_features_and_rejects_account_for_every_input_file(
    first_run: tuple[ExtractConfig, ExtractSummary], features: DataFrame, rejects: dict[str, str], image_tree: dict
) -> None:
    inputs = [*image_tree["good"], *image_tree["odd"].values(), *image_tree["bad"].values()]
    summary = first_run[1]

    assert features.count() + len(rejects) == len(inputs) == summary.n_inputs
    assert (summary.n_featurized, summary.n_rejected) == (features.count(), len(rejects))


def test_outputs_are_marked_complete(first_run: tuple[ExtractConfig, ExtractSummary]) -> None:
    config = first_run[0]

    assert Path(config.features, "_SUCCESS").is_file()
    assert Path(config.rejects, "_SUCCESS").is_file()


def test_features_match_keras_on_the_same_weights(features: DataFrame, image_tree: dict, image_size: int) -> None:
    """Spark's path (binary read, UDF, LiteRT) against Keras predict on the same files and weights."""
    rows = {row.path: np.asarray(row.features) for row in features.collect()}
    files = image_tree["good"][:8]
    expected = build_keras_model("none", image_size).predict(
        np.stack([decode_image(path.read_bytes(), image_size) for path in files]), verbose=0
    )

    actual = np.stack([rows[_uri(path)] for path in files])

    cosine = (actual * expected).sum(1) / (np.linalg.norm(actual, axis=1) * np.linalg.norm(expected, axis=1))
    assert cosine.min() >= 0.9999


def _snapshot(spark: SparkSession, uri: str) -> list[tuple]:
    return sorted((row.path, row.label, tuple(row.features)) for row in spark.read.parquet(uri).collect())


def test_rerun_featurizes_nothing_new(
    spark: SparkSession, fresh_tree: Path, random_model: CompiledModel, image_size: int, tmp_path: Path
) -> None:
    config = _config(fresh_tree, tmp_path, image_size)
    run(spark, config, random_model)
    before = _snapshot(spark, config.features)
    files_before = sorted(Path(config.features).iterdir())

    summary = run(spark, config, random_model)

    assert (summary.n_featurized, summary.n_rejected) == (0, 0)
    assert summary.n_known == summary.n_inputs
    assert sorted(Path(config.features).iterdir()) == files_before
    assert _snapshot(spark, config.features) == before


def test_added_images_are_the_only_ones_featurized(
    spark: SparkSession, fresh_tree: Path, random_model: CompiledModel, image_size: int, tmp_path: Path
) -> None:
    config = _config(fresh_tree, tmp_path, image_size)
    run(spark, config, random_model)
    before = _snapshot(spark, config.features)
    added = generate(tmp_path / "new", 5, n_labels=5, seed=99)
    for path in added:
        target = fresh_tree / path.relative_to(tmp_path / "new")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target.with_name("new_" + target.name))

    summary = run(spark, config, random_model)

    after = _snapshot(spark, config.features)
    assert summary.n_featurized == 5
    assert len(after) == len(before) + 5
    assert len({row[0] for row in after}) == len(after)
    assert set(before) <= set(after)


def test_a_killed_run_s_uncommitted_output_is_never_committed_by_the_next_run(
    spark: SparkSession, fresh_tree: Path, random_model: CompiledModel, image_size: int, tmp_path: Path
) -> None:
    """A run killed between its tasks' commits and its job's commit leaves committed task outputs in
    ``_temporary/0/``; the next run featurizes those images again and must be their only writer."""
    config = _config(fresh_tree, tmp_path / "shared", image_size)
    run(spark, config, random_model)
    for path in generate(tmp_path / "new", 3, n_labels=3, seed=7):
        target = fresh_tree / path.relative_to(tmp_path / "new")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target.with_name("killed_" + target.name))
    killed = _config(fresh_tree, tmp_path / "killed", image_size)
    run(spark, killed, random_model)
    task_output = Path(config.features) / "_temporary" / "0" / "task_202501010000_0001_m_000000"
    task_output.mkdir(parents=True)
    for part in Path(killed.features).glob("part-*.parquet"):
        shutil.copy(part, task_output / part.name.replace("part-", "part-killed-"))

    summary = run(spark, config, random_model)

    paths = [row.path for row in spark.read.parquet(config.features).select("path").collect()]
    assert summary.n_featurized == 3
    assert len(paths) == len(set(paths))


def test_moved_rewritten_and_added_images_are_featurized_again_and_removed_ones_are_not(
    spark: SparkSession,
    image_tree: dict,
    fresh_tree: Path,
    random_model: CompiledModel,
    image_size: int,
    tmp_path: Path,
) -> None:
    config = dataclasses.replace(
        _config(fresh_tree, tmp_path, image_size), manifest=str(tmp_path / "run" / "manifest.json")
    )
    first = run(spark, config, random_model)
    images = [fresh_tree / path.relative_to(image_tree["root"]) for path in image_tree["good"]]
    moved, removed, rewritten = images[0], images[1], images[2]
    (fresh_tree / "Relabelled").mkdir()
    moved.rename(fresh_tree / "Relabelled" / moved.name)
    removed.unlink()
    rewritten.write_bytes(images[3].read_bytes())
    os.utime(rewritten, (time.time() + 5, time.time() + 5))  # a later modification time, as S3 gives a rewrite
    shutil.copy(images[4], fresh_tree / images[4].parent.name / "added.jpg")

    summary = run(spark, config, random_model)

    manifest = json.loads(Path(config.manifest).read_text())
    n_features = first.n_featurized  # one removed, one added
    assert summary.n_featurized == 3
    assert manifest["n_images"] == first.n_inputs
    assert (manifest["n_featurized"], manifest["n_reused"]) == (3, n_features - 3)
    assert manifest["n_features"] == n_features
    assert manifest["n_stale_rows"] == 3  # the moved, removed and rewritten images' old rows
    current = {row.path: row for row in spark.read.parquet(config.features).collect()}
    assert _uri(fresh_tree / "Relabelled" / moved.name) in current
    assert current[_uri(fresh_tree / "Relabelled" / moved.name)].label == "Relabelled"


def _jobs_of(spark: SparkSession, group: str, action) -> tuple[object, int]:
    spark.sparkContext.setJobGroup(group, group)
    try:
        result = action()
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    return result, len(spark.sparkContext.statusTracker().getJobIdsForGroup(group))


def test_known_versions_runs_no_spark_job_on_a_first_run_and_one_after(
    spark: SparkSession, fresh_tree: Path, random_model: CompiledModel, image_size: int, tmp_path: Path
) -> None:
    config = _config(fresh_tree, tmp_path, image_size)
    fs = HadoopFs(spark)
    fs.ensure_writable_dir(config.features, "--features")  # as run() does before it asks
    fs.ensure_writable_dir(config.rejects, "--rejects")

    empty, first_jobs = _jobs_of(spark, "known-first", lambda: known_versions(spark, fs, config))
    summary = run(spark, config, random_model)
    (features, rejects), later_jobs = _jobs_of(spark, "known-later", lambda: known_versions(spark, fs, config))

    assert (empty, first_jobs) == ((set(), set()), 0)
    assert later_jobs >= 1
    assert (len(features), len(rejects)) == (summary.n_featurized, summary.n_rejected)
    stored = {(row.path, row.size, row.modified) for row in spark.read.parquet(config.features).collect()}
    assert features == stored


def test_the_manifest_digest_is_the_contracts_over_the_listing(
    spark: SparkSession, fresh_tree: Path, random_model: CompiledModel, image_size: int, tmp_path: Path
) -> None:
    config = dataclasses.replace(
        _config(fresh_tree, tmp_path, image_size), manifest=str(tmp_path / "run" / "manifest.json")
    )
    run(spark, config, random_model)
    files = [p for p in fresh_tree.rglob("*") if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png")]

    expected = images_digest(
        (p.relative_to(fresh_tree).as_posix(), p.stat().st_size, int(p.stat().st_mtime * 1000)) for p in files
    )

    assert json.loads(Path(config.manifest).read_text())["images_digest"] == expected


def test_new_images_are_read_in_one_even_partition_per_core(spark: SparkSession) -> None:
    paths = [f"s3://b/images/Kiwi/{number}.jpg" for number in range(100)]
    listing = Listing(paths, {}, dict.fromkeys(paths, "Kiwi"), dict.fromkeys(paths, (10, 0)))

    per_partition = image_frame(spark, listing).groupBy(F.spark_partition_id()).count().collect()

    assert sorted(row["count"] for row in per_partition) == [50, 50]


def test_partitions_hold_at_most_1024_images_in_whole_waves(spark: SparkSession) -> None:
    paths = [f"s3://b/images/Kiwi/{number}.jpg" for number in range(2100)]
    listing = Listing(paths, {}, dict.fromkeys(paths, "Kiwi"), dict.fromkeys(paths, (10, 0)))

    per_partition = image_frame(spark, listing).groupBy(F.spark_partition_id()).count().collect()

    assert len(per_partition) == 4
    assert max(row["count"] for row in per_partition) <= 1024


def test_features_of_another_model_are_refused(
    spark: SparkSession, first_run: tuple[ExtractConfig, ExtractSummary], fresh_tree: Path, image_size: int
) -> None:
    config = first_run[0]
    generate(fresh_tree / "extra", 1, n_labels=1)
    other = ExtractConfig(str(fresh_tree), config.features, config.rejects, "none", image_size + 32)

    with pytest.raises(JobInputError, match="holds features of another model"):
        run(spark, other)


def test_missing_images_folder_is_a_clear_error(spark: SparkSession, tmp_path: Path, image_size: int) -> None:
    with pytest.raises(JobInputError, match="does not exist"):
        run(spark, _config(tmp_path / "nowhere", tmp_path, image_size))


def test_folder_without_images_is_a_clear_error(spark: SparkSession, tmp_path: Path, image_size: int) -> None:
    (tmp_path / "empty" / "Kiwi").mkdir(parents=True)
    (tmp_path / "empty" / "Kiwi" / "notes.txt").write_text("no images here")

    with pytest.raises(JobInputError, match=r"holds no \.jpg, \.jpeg or \.png files"):
        run(spark, _config(tmp_path / "empty", tmp_path, image_size))


def test_rejects_default_beside_the_features() -> None:
    config = parse_args(["--images", "s3://b/images/", "--features", "s3://b/features/"])

    assert (config.features, config.rejects, config.weights) == (
        "s3://b/features",
        "s3://b/features_rejects",
        "imagenet",
    )


def test_every_image_broken_fails_saying_so_and_keeps_the_rejects(
    spark: SparkSession, tmp_path: Path, random_model: CompiledModel, image_size: int
) -> None:
    (tmp_path / "broken" / "Kiwi").mkdir(parents=True)
    (tmp_path / "broken" / "Kiwi" / "empty.jpg").write_bytes(b"")
    (tmp_path / "broken" / "Kiwi" / "notes.png").write_text("not a picture\n")
    config = dataclasses.replace(
        _config(tmp_path / "broken", tmp_path, image_size), manifest=str(tmp_path / "run" / "manifest.json")
    )

    with pytest.raises(JobInputError, match=r"^no image could be decoded: all 2 under --images .* were rejected"):
        run(spark, config, random_model)

    assert spark.read.parquet(config.rejects).count() == 2
    assert json.loads(Path(config.manifest).read_text())["n_features"] == 0
