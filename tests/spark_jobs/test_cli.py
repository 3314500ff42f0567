"""The jobs as users and EMR run them: `spark-submit` on the entry scripts, in a separate process.

Their bad input, on local folders. Both jobs over S3, staged and zipped as EMR runs them, with Keras and
numpy as oracles, are in test_s3.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from fruits_spark.errors import JobInputError, run_cli
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


def test_pca_without_features_is_one_error_line_also_written_for_the_dag(spark_submit, tmp_path: Path) -> None:
    failure = tmp_path / "runs" / "r" / "failures" / "pca.json"
    result = spark_submit(
        SPARK_JOBS_DIR / "pca.py",
        *("--features", str(tmp_path / "none"), "--output", str(tmp_path / "p"), "--failure", str(failure)),
    )

    line = assert_one_error_line(result, "pca")
    assert "run extract_features first" in line
    assert not list(tmp_path.rglob("_SUCCESS"))
    assert json.loads(failure.read_text()) == {"job": "pca", "message": line, "kind": "input", "exit_code": 2}


def raises(error: Exception):
    def main(argv) -> None:
        raise error

    return main


def test_a_mistake_of_the_user_exits_2_with_one_line_written_to_failure(tmp_path: Path, capsys) -> None:
    failure = tmp_path / "failure.json"

    with pytest.raises(SystemExit) as exited:
        run_cli(raises(JobInputError("--images s3://b/images/ holds no .jpg files")), ["--failure", str(failure)], "x")

    assert exited.value.code == 2
    assert capsys.readouterr().err == "x: error: --images s3://b/images/ holds no .jpg files\n"
    report = json.loads(failure.read_text())
    assert (report["message"], report["kind"]) == ("x: error: --images s3://b/images/ holds no .jpg files", "input")


def test_an_unexpected_error_keeps_its_traceback_and_writes_its_first_line(tmp_path: Path) -> None:
    failure = tmp_path / "failure.json"
    error = RuntimeError("An error occurred while calling o42.parquet.\n\tat org.apache.spark.Something(...)")

    with pytest.raises(RuntimeError):
        run_cli(raises(error), ["--failure", str(failure)], "pca")

    report = json.loads(failure.read_text())
    assert report["message"] == "pca: failed: RuntimeError: An error occurred while calling o42.parquet."
    assert (report["kind"], report["exit_code"]) == ("unexpected", 1)


def test_a_failure_file_that_cannot_be_written_never_hides_the_job_s_error(tmp_path: Path, caplog) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")

    with pytest.raises(SystemExit):
        run_cli(raises(JobInputError("bad")), ["--failure", str(blocker / "failure.json")], "pca")

    assert "could not write the failure report" in caplog.text


def test_a_job_that_starts_removes_an_earlier_try_s_failure(tmp_path: Path) -> None:
    failure = tmp_path / "failure.json"
    failure.write_text('{"message": "pca: error: from an earlier try"}')

    run_cli(lambda argv: None, ["--failure", str(failure)], "pca")

    assert not failure.exists()
