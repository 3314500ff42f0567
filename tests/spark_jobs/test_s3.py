"""Both jobs through spark-submit against the embedded endpoint's S3 API, as on EMR: s3:// in, s3:// out.

The venv's Spark reaches the endpoint through Hadoop's S3A connector, and the executors fetch images
with boto3, both from the standard AWS variables. The endpoint records every request, so the tests can
count what reading the images costs.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from botocore.client import BaseClient

from fruits_airflow.artifacts import ENTRY_SCRIPTS, build_py_files_zip
from fruits_airflow.reuse import images_in_s3
from fruits_spark.images import decode_image
from local_aws import EmbeddedAws
from local_aws.request_log import Request, requests_under
from tests.spark_jobs.numpy_pca import NumpyPca
from tests.suite import SPARK_JOBS_DIR

BUCKET = "fruits-s3a"
IMAGES = f"s3://{BUCKET}/images/"
FEATURES = f"s3://{BUCKET}/features/imagenet/"
REJECTS = f"s3://{BUCKET}/features/imagenet_rejects/"
MANIFEST = f"s3://{BUCKET}/runs/r1/manifest.json"


@dataclass(frozen=True)
class JobRun:
    """One spark-submit and the requests the endpoint answered while it ran."""

    result: subprocess.CompletedProcess
    requests: list[Request]

    def image_requests(self) -> list[Request]:
        """Requests about the images: their objects, and listings of their prefix."""
        return requests_under(self.requests, BUCKET, "images")


@pytest.fixture(scope="module")
def aws_environment(aws: EmbeddedAws) -> dict[str, str]:
    """What a shell that points the AWS SDKs at the endpoint has: the standard variables only."""
    return aws.client_environment()


@pytest.fixture(scope="module")
def staged_jobs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """As the DAG stages them for EMR: the entry scripts in a folder of their own, away from the source
    tree, and their package only in the --py-files zip."""
    staged = tmp_path_factory.mktemp("staged")
    for script in ENTRY_SCRIPTS:
        shutil.copy(SPARK_JOBS_DIR / script, staged / script)
    return staged, build_py_files_zip(staged / "fruits_spark.zip")


@pytest.fixture(scope="module")
def submit(spark_submit_executable: Path, aws: EmbeddedAws, staged_jobs: tuple[Path, Path]) -> Callable[..., JobRun]:
    """Run a staged job script with the venv's spark-submit and --py-files, as an EMR step does, with the
    AWS variables given and without the tests' PYTHONPATH."""
    scripts, py_files = staged_jobs

    def run(script: str, *args: str, env: dict[str, str]) -> JobRun:
        base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("AWS_")}
        aws.requests.clear()
        command = [str(spark_submit_executable), "--master", "local[2]", "--py-files", str(py_files)]
        result = subprocess.run(
            [*command, str(scripts / script), *args],
            env={**base, **env},
            capture_output=True,
            text=True,
            timeout=600,
        )
        return JobRun(result, list(aws.requests))

    return run


@pytest.fixture(scope="module")
def uploaded(s3: BaseClient, aws: EmbeddedAws, image_tree: dict) -> dict[str, Path]:
    """The image tree (good, odd and bad files, and files that are no images) under s3://BUCKET/images/."""
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": aws.region})
    root: Path = image_tree["root"]
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        key = f"images/{path.relative_to(root).as_posix()}"
        s3.upload_file(str(path), BUCKET, key)
        files[f"s3://{BUCKET}/{key}"] = path
    return files


@pytest.fixture(scope="module")
def extract(submit, uploaded, aws_environment, keras_cache, image_size) -> Callable[[], JobRun]:
    """extract_features over the uploaded images with the test-made ImageNet weights; it must succeed."""
    home, _ = keras_cache

    def run() -> JobRun:
        job = submit(
            "extract_features.py",
            *("--images", IMAGES, "--features", FEATURES, "--rejects", REJECTS, "--manifest", MANIFEST),
            *("--weights", "imagenet", "--image-size", str(image_size)),
            env={**aws_environment, "KERAS_HOME": str(home)},
        )
        assert job.result.returncode == 0, job.result.stdout[-3000:]
        return job

    return run


@pytest.fixture(scope="module")
def first_run(extract) -> JobRun:
    return extract()


@pytest.fixture(scope="module")
def rerun(first_run, extract) -> JobRun:
    return extract()


def read_parquet(s3: BaseClient, uri: str) -> pd.DataFrame:
    prefix = uri.removeprefix(f"s3://{BUCKET}/")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]]
    parts = [k for k in keys if k.endswith(".parquet")]
    return pd.concat(pd.read_parquet(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read())) for k in parts)


def keys_under(s3: BaseClient, uri: str) -> set[str]:
    prefix = uri.removeprefix(f"s3://{BUCKET}/")
    return {o["Key"].removeprefix(prefix) for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])}


def test_first_run_on_an_empty_bucket_featurizes_as_keras_does(first_run, s3, image_tree, keras_cache, image_size):
    _, model = keras_cache
    features = read_parquet(s3, FEATURES).set_index("path")
    good = image_tree["good"][:4]
    uris = [f"{IMAGES}{p.relative_to(image_tree['root']).as_posix()}" for p in good]

    expected = model.predict(np.stack([decode_image(p.read_bytes(), image_size) for p in good]), verbose=0)
    actual = np.stack(features.loc[uris, "features"].to_list())
    cosine = (actual * expected).sum(1) / (np.linalg.norm(actual, axis=1) * np.linalg.norm(expected, axis=1))
    assert cosine.min() >= 0.9999
    assert features.loc[uris[0], "label"] == "Apple Red 1"
    assert {"_SUCCESS", "_fruits_model.json"} <= keys_under(s3, FEATURES)


def test_every_image_file_is_featurized_or_rejected_once(first_run, s3, uploaded, image_tree):
    root = image_tree["root"]
    featurizable = {
        f"{IMAGES}{p.relative_to(root).as_posix()}" for p in [*image_tree["good"], *image_tree["odd"].values()]
    }
    bad = {f"{IMAGES}{p.relative_to(root).as_posix()}" for p in image_tree["bad"].values()}

    features, rejects = read_parquet(s3, FEATURES), read_parquet(s3, REJECTS)

    assert sorted(features["path"]) == sorted(featurizable)
    assert sorted(rejects["path"]) == sorted(bad)
    assert "_SUCCESS" in keys_under(s3, REJECTS)


def test_first_run_reads_each_image_with_one_get_and_no_status_request(first_run, uploaded, image_tree):
    root = image_tree["root"]
    unread = {image_tree["bad"]["empty"], image_tree["bad"]["hidden"]}  # rejected from their listing alone
    images = [p for p in uploaded.values() if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    objects = {p: f"/{BUCKET}/images/{p.relative_to(root).as_posix()}" for p in images}
    read = {path for image, path in objects.items() if image not in unread}
    object_requests = [r for r in first_run.requests if r.path in objects.values()]

    gets = sorted(r.path for r in object_requests if r.method == "GET")

    assert gets == sorted(read)
    assert [r for r in object_requests if r.method != "GET"] == []
    assert len(first_run.image_requests()) / len(images) <= 1.2


def test_rerun_reads_no_image_and_writes_no_features(first_run, rerun):
    image_objects = [r for r in rerun.image_requests() if r.path.lower().endswith((".jpg", ".jpeg", ".png"))]
    writes = [r for r in rerun.requests if r.method in ("PUT", "POST") and r.path.startswith(f"/{BUCKET}/features")]

    assert image_objects == []
    assert "0 new" in rerun.result.stdout
    assert [r.path for r in writes if not r.path.endswith("/_write_check")] == []


def test_the_jobs_digest_of_the_images_is_the_one_the_dag_computes_from_its_listing(first_run, s3):
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key="runs/r1/manifest.json")["Body"].read())

    assert (manifest["images_digest"], manifest["n_images"]) == images_in_s3(s3, BUCKET)


def test_pca_over_s3_writes_its_output_report_and_summary_and_agrees_with_numpy(
    first_run, submit, aws_environment, s3, tmp_path
):
    output, report = f"s3://{BUCKET}/runs/r1/pca/", f"s3://{BUCKET}/runs/r1/report/"
    summary_json = tmp_path / "summary.json"

    run = submit(
        "pca.py",
        *("--features", FEATURES, "--output", output, "--report", report, "--summary-json", str(summary_json)),
        env=aws_environment,
    )

    assert run.result.returncode == 0, run.result.stdout[-3000:]
    assert "_SUCCESS" in keys_under(s3, output)
    assert {"explained_variance.json", "pca_features.csv", "cumulative_variance.png", "pca_scatter.png"} <= keys_under(
        s3, report
    )
    summary = json.loads(s3.get_object(Bucket=BUCKET, Key="runs/r1/report/explained_variance.json")["Body"].read())
    oracle = NumpyPca(np.stack(read_parquet(s3, FEATURES)["features"].to_list()))
    np.testing.assert_allclose(summary["explained_variance_ratio"], oracle.ratios, atol=1e-6)
    rows = read_parquet(s3, output)
    assert len(rows) == summary["n_images"]
    assert {len(vector) for vector in rows["pca_features"]} == {summary["k"]}
    # The run's own figures and phase times (--summary-json), which `make bench` reads.
    document = json.loads(summary_json.read_text())
    assert (document["k"], document["n_images"], document["n_features"]) == (summary["k"], len(rows), 1280)
    assert document["seconds"]["total"] >= document["seconds"]["run"] > 0


def assert_one_error_line(run: JobRun, prefix: str) -> str:
    output = run.result.stdout + run.result.stderr
    assert run.result.returncode == 2, output[-3000:]
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if "error:" in line.lower()]
    assert len(errors) == 1, output[-3000:]
    assert errors[0].startswith(f"{prefix}: error: ")
    return errors[0]


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (f"s3://{BUCKET}/no-such-prefix/", "does not exist"),
        ("s3://fruits-no-such-bucket/images/", "--images s3://fruits-no-such-bucket/images/"),
    ],
)
def test_missing_prefix_or_bucket_is_one_error_line_and_no_output(
    submit, uploaded, aws_environment, s3, images, message
):
    features = f"s3://{BUCKET}/features/bad-input/"

    run = submit("extract_features.py", "--images", images, "--features", features, env=aws_environment)

    assert message in assert_one_error_line(run, "extract_features")
    assert "_SUCCESS" not in keys_under(s3, features)


def test_unreachable_endpoint_is_one_error_line(submit, aws_environment):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    unreachable = {**aws_environment, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}

    run = submit("extract_features.py", "--images", IMAGES, "--features", FEATURES, env=unreachable)

    line = assert_one_error_line(run, "extract_features")
    assert "cannot be read" in line
    assert f"127.0.0.1:{port}" in line
