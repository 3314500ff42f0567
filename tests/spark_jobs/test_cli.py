"""The jobs as users and EMR run them: `spark-submit` on the entry scripts, in a separate process.

Their bad input, on local folders. Both jobs over S3, staged and zipped as EMR runs them, with Keras and
numpy as oracles, are in test_s3.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

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


def test_pca_without_features_is_one_error_line(spark_submit, tmp_path: Path) -> None:
    result = spark_submit(
        SPARK_JOBS_DIR / "pca.py", "--features", str(tmp_path / "none"), "--output", str(tmp_path / "p")
    )

    line = assert_one_error_line(result, "pca")
    assert "run extract_features first" in line
    assert not list(tmp_path.rglob("_SUCCESS"))
