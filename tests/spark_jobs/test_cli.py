"""The jobs as users and EMR run them: `spark-submit` on the entry scripts, in a separate process.

Both jobs over S3, with Keras and numpy as oracles, are in test_s3.py; these run on local folders.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd

from fruits_airflow.artifacts import build_py_files_zip
from tests.suite import SPARK_JOBS_DIR


def assert_one_error_line(result: subprocess.CompletedProcess, prefix: str) -> str:
    # spark-submit relays the Python driver's stderr on its own stdout, so both streams are read.
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if "error:" in line.lower()]
    assert len(errors) == 1, output[-3000:]
    assert errors[0].startswith(f"{prefix}: error: ")
    return errors[0]


def test_pca_runs_from_the_py_files_zip_alone(
    spark_submit, image_tree: dict, tmp_path: Path, spark, random_model, image_size
):
    """As on EMR: the entry script away from the source tree, its package only in the --py-files zip."""
    from fruits_spark.extract_features import parse_args, run

    features = tmp_path / "features"
    run(spark, parse_args(["--images", str(image_tree["root"]), "--features", str(features)]), random_model)
    staged = tmp_path / "staged"
    staged.mkdir()
    shutil.copy(SPARK_JOBS_DIR / "pca.py", staged / "pca.py")
    py_files = build_py_files_zip(staged / "fruits_spark.zip")

    summary = tmp_path / "summary.json"
    args = ("--features", str(features), "--output", str(tmp_path / "pca"), "--k", "4", "--summary-json", str(summary))

    result = spark_submit(staged / "pca.py", *args, py_files=py_files)

    assert result.returncode == 0, result.stderr[-3000:]
    rows = pd.read_parquet(tmp_path / "pca")
    assert {len(v) for v in rows["pca_features"]} == {4}
    document = json.loads(summary.read_text())
    assert (document["k"], document["n_images"], document["n_features"]) == (4, len(rows), 1280)
    assert document["seconds"]["total"] >= document["seconds"]["run"] > 0


def test_missing_images_is_one_error_line_and_no_output(spark_submit, tmp_path: Path) -> None:
    result = spark_submit(
        SPARK_JOBS_DIR / "extract_features.py", "--images", str(tmp_path / "nowhere"), "--features", str(tmp_path / "f")
    )

    line = assert_one_error_line(result, "extract_features")
    assert "--images" in line
    assert "does not exist" in line
    assert not (tmp_path / "f" / "_SUCCESS").exists()


def test_unwritable_features_is_one_error_line_and_no_output(spark_submit, image_tree: dict, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")

    result = spark_submit(
        SPARK_JOBS_DIR / "extract_features.py",
        *("--images", str(image_tree["root"]), "--features", str(blocker / "features")),
    )

    line = assert_one_error_line(result, "extract_features")
    assert "--features" in line
    assert not list(tmp_path.rglob("_SUCCESS"))


def test_pca_without_features_is_one_error_line(spark_submit, tmp_path: Path) -> None:
    result = spark_submit(
        SPARK_JOBS_DIR / "pca.py", "--features", str(tmp_path / "none"), "--output", str(tmp_path / "p")
    )

    line = assert_one_error_line(result, "pca")
    assert "run extract_features first" in line
    assert not list(tmp_path.rglob("_SUCCESS"))
