"""The product end to end, as `make demo` runs it: the real DAG, `airflow dags test`, the embedded endpoint."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from fruits_spark.model_cache import default_cache_dir
from tests.suite import REPO_ROOT
from tools.demo import BUCKET, DemoRun, run_demo
from tools.process_tree import alive, descendants
from tools.sample_images import generate

N_GOOD = 16
NOT_IN_A_CHECKOUT = (".git", ".venv", ".local-aws", ".*_cache", "__pycache__", "demo-output", "sample-images", "dist")


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small landing folder: generated fruit and one empty file that must be rejected."""
    root = tmp_path_factory.mktemp("landing") / "images"
    generate(root, N_GOOD, n_labels=4)
    (root / "Kiwi" / "broken.jpg").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="module")
def first_demo(landing: Path, state_dir: Path, node_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    return run_demo(landing, tmp_path_factory.mktemp("out"), state_dir, weights="none", node_dir=node_dir)


def saved_objects(state_dir: Path, prefix: str) -> list[tuple[str, str]]:
    """Objects the endpoint saved to its state folder on stop, with their MD5: the S3 of the next demo."""
    manifest = json.loads((state_dir / "aws" / "s3" / "manifest.json").read_text())
    keys = manifest["buckets"][BUCKET]["keys"]
    return sorted((key, md5) for key, md5 in keys.items() if key.startswith(prefix))


def step_stdout(state_dir: Path, run: DemoRun) -> str:
    (cluster_id,) = run.clusters
    objects = state_dir / "aws" / "s3" / "objects"
    stdouts = [md5 for key, md5 in saved_objects(state_dir, f"logs/{cluster_id}/steps/") if key.endswith("/stdout.gz")]
    return "\n".join(gzip.decompress((objects / md5).read_bytes()).decode() for md5 in stdouts)


def test_the_run_succeeds_and_terminates_its_cluster(first_demo: DemoRun) -> None:
    assert first_demo.state == "success", first_demo.log_file.read_text()[-5000:]
    assert list(first_demo.clusters.values()) == ["TERMINATED"]


def test_the_step_takes_its_model_from_the_bucket_s_cache_or_adds_it_there(
    first_demo: DemoRun, state_dir: Path
) -> None:
    """The step's --model-cache is s3://BUCKET/artifacts/models/; its entry also reaches the local cache."""
    stdout = step_stdout(state_dir, first_demo)
    entry = "mobilenet_v2-224px-none-seed42-tf"

    assert re.search(rf"(model from cache|compiled and cached): s3://{BUCKET}/artifacts/models/{entry}", stdout)
    assert "not cached" not in stdout
    assert [key for key, _ in saved_objects(state_dir, "artifacts/models/") if key.endswith(".json")] != []
    assert list(Path(default_cache_dir()).glob(f"{entry}*.json")) != []


def test_outputs_hold_one_pca_row_per_featurized_image(first_demo: DemoRun) -> None:
    pca = pd.read_parquet(first_demo.output_dir / "pca")
    report = pd.read_json(first_demo.output_dir / "report" / "explained_variance.json", typ="series")

    assert len(pca) == N_GOOD == report["n_images"]
    assert {len(vector) for vector in pca["pca_features"]} == {report["k"]}
    for plot in ("cumulative_variance.png", "pca_scatter.png", "pca_features.csv"):
        assert (first_demo.output_dir / "report" / plot).stat().st_size > 0


def test_the_empty_file_is_a_reject(first_demo: DemoRun) -> None:
    assert first_demo.n_rejected == 1


def test_a_second_demo_uploads_and_featurizes_nothing_new(
    first_demo: DemoRun, landing: Path, state_dir: Path, node_dir: Path, tmp_path: Path
) -> None:
    features_before = saved_objects(state_dir, "features/none")

    second = run_demo(landing, tmp_path, state_dir, weights="none", node_dir=node_dir)

    assert second.state == "success", second.log_file.read_text()[-5000:]
    assert f"Uploaded 0 new or changed image(s) of {N_GOOD + 1}" in second.log_file.read_text()
    assert "nothing new to featurize" in step_stdout(state_dir, second)
    assert saved_objects(state_dir, "features/none") == features_before


def test_a_failed_step_fails_the_run_reports_why_and_terminates_the_cluster(
    landing: Path, node_dir: Path, tmp_path: Path
) -> None:
    missing_weights = f"s3://{BUCKET}/nowhere/mobilenet_v2.weights.h5"

    failed = run_demo(landing, tmp_path / "out", tmp_path / "state", weights=missing_weights, node_dir=node_dir)

    log = failed.log_file.read_text()
    assert failed.state == "failed"
    assert list(failed.clusters.values()) == ["TERMINATED"]
    assert "EMR step extract_features" in log
    assert "FAILED" in log
    # The job's own error line, naming the URI it was given.
    assert f"extract_features: error: --weights {missing_weights} cannot be read" in log
    assert failed.output_dir is None


def test_a_bootstrap_that_cannot_install_fails_the_run_before_any_step_and_the_demo_says_why(
    landing: Path, tmp_path: Path, project_env: dict[str, str]
) -> None:
    # A checkout whose primary node's bootstrap requirements (the endpoint's node is the primary) hold a line
    # uv cannot parse; its own state, so a fresh node.
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO_ROOT, checkout, ignore=shutil.ignore_patterns(*NOT_IN_A_CHECKOUT))
    (checkout / ".venv").symlink_to(REPO_ROOT / ".venv")
    requirements = checkout / "bootstrap" / "requirements-primary.txt"
    requirements.write_text(requirements.read_text() + "this is not a requirement!\n")
    python_path = os.pathsep.join(str(checkout / folder) for folder in ("spark_jobs", "plugins", ""))
    state, out = tmp_path / "state", tmp_path / "out"
    command = ["-m", "tools.demo", "--images", str(landing), "--out", str(out), "--state-dir", str(state)]

    demo = subprocess.run(
        [sys.executable, *command, "--weights", "none"],
        cwd=checkout,
        env={**project_env, "PYTHONPATH": python_path},
        capture_output=True,
        text=True,
        timeout=900,
    )

    assert demo.returncode == 1, demo.stderr[-3000:]
    task_log = (out / "airflow-dags-test.log").read_text()
    assert re.search(
        r"TERMINATED_WITH_ERRORS before the run's steps completed: BOOTSTRAP_FAILURE: "
        r"On the master instance \(i-\w+\), bootstrap action 1 returned a non-zero return code",
        demo.stderr,
    )
    assert "error: Couldn't parse requirement in" in demo.stderr
    assert "BOOTSTRAP_FAILURE" in task_log
    assert "error: Couldn't parse requirement in" in task_log
    logs = [key.split("/")[2:] for key, _ in saved_objects(state, "logs/")]
    assert ["node", "bootstrap-actions", "1", "stderr.gz"] in [parts[:1] + parts[2:] for parts in logs]
    assert not [parts for parts in logs if parts[0] == "steps"]


def test_ctrl_c_during_a_step_stops_every_process_the_demo_started(
    landing: Path, node_dir: Path, tmp_path: Path, project_env: dict[str, str]
) -> None:
    command = [sys.executable, "-m", "tools.demo", "--images", str(landing), "--out", str(tmp_path / "out")]
    # The session's node, where the cluster's venv is already built, as a second `make demo` finds it.
    (tmp_path / "state" / "aws").mkdir(parents=True)
    (tmp_path / "state" / "aws" / "node").symlink_to(node_dir)
    # A session of its own, like a terminal's foreground job: Ctrl-C signals the whole group.
    stderr_file = tmp_path / "demo.stderr"
    with stderr_file.open("w") as sink:
        demo = subprocess.Popen(
            [*command, "--state-dir", str(tmp_path / "state"), "--weights", "none"],
            stdout=subprocess.DEVNULL,
            stderr=sink,
            cwd=REPO_ROOT,
            env=project_env,
            start_new_session=True,
        )
    try:
        started = wait_for_spark_submit(demo, timeout=300)

        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(timeout=120)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)

    stderr = stderr_file.read_text()
    assert demo.returncode == 130, stderr[-3000:]
    assert "interrupted; every process it started is stopped" in stderr
    assert not alive(started), "processes outlived the demo"


def wait_for_spark_submit(demo: subprocess.Popen, timeout: float) -> set[int]:
    """Every process below the demo once an EMR step's spark-submit JVM runs among them."""
    root, deadline = demo.pid, time.monotonic() + timeout
    while time.monotonic() < deadline and demo.poll() is None:
        tree = descendants(root) - {root}
        # spark-submit's shell scripts exec the JVM, whose main class is SparkSubmit.
        if any("org.apache.spark.deploy.SparkSubmit" in _command_line(pid) for pid in tree):
            # The JVM and the Python driver start a moment after the launcher.
            time.sleep(3)
            return descendants(root) - {root}
        time.sleep(0.5)
    pytest.fail(f"no EMR step started within {timeout:.0f} s (demo exit code {demo.poll()})")


def _command_line(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""
