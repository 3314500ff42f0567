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

from fruits_airflow import wheelhouse
from fruits_airflow.run_failures import REFUSAL_XCOM_KEY
from fruits_spark.model_cache import default_cache_dir
from tests.suite import REPO_ROOT
from tools.demo import BUCKET, DemoRun, failure_summary, run_demo, summary
from tools.local_airflow import run_xcoms
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
def first_demo(
    landing: Path, state_dir: Path, project_node_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> DemoRun:
    return run_demo(landing, tmp_path_factory.mktemp("out"), state_dir, weights="none", node_dir=project_node_dir)


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
    assert first_demo.summary["rejected"] == 1


@pytest.fixture(scope="module")
def landing_changes(first_demo: DemoRun, landing: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """After the first demo, what a team does to a landing folder: a label fix, a deletion, an image
    replaced in place, and new images. Returns what changed, relative to the landing folder."""
    labels = sorted(folder.name for folder in landing.iterdir() if folder.is_dir() and folder.name != "Kiwi")
    first, second = (sorted((landing / label).glob("*.jpg")) for label in labels[:2])
    extra = generate(tmp_path_factory.mktemp("extra"), 3, n_labels=1, seed=7)
    moved, deleted, rewritten = first[0], first[1], second[0]
    moved_to = landing / labels[1] / f"moved_{moved.name}"
    moved.rename(moved_to)
    deleted.unlink()
    rewritten.write_bytes(extra[0].read_bytes())
    added = [landing / labels[0] / "added_0.jpg", landing / labels[2] / "added_1.jpg"]
    for source, target in zip(extra[1:], added, strict=True):
        shutil.copy(source, target)
    relative = lambda path: path.relative_to(landing).as_posix()  # noqa: E731
    return {
        "featurized": {relative(moved_to), relative(rewritten), *map(relative, added)},
        "removed": {relative(moved), relative(deleted)},
    }


@pytest.fixture(scope="module")
def changed_demo(
    landing_changes: dict, landing: Path, state_dir: Path, project_node_dir: Path, tmp_path_factory
) -> DemoRun:
    return run_demo(landing, tmp_path_factory.mktemp("out"), state_dir, weights="none", node_dir=project_node_dir)


@pytest.fixture(scope="module")
def unchanged_demo(
    changed_demo: DemoRun, landing: Path, state_dir: Path, project_node_dir: Path, tmp_path_factory
) -> DemoRun:
    return run_demo(landing, tmp_path_factory.mktemp("out"), state_dir, weights="none", node_dir=project_node_dir)


def landing_images(landing: Path) -> dict[str, str]:
    """``<label>/<file> -> label`` of the landing folder's images that have features (the empty one has none)."""
    return {
        path.relative_to(landing).as_posix(): path.parent.name
        for path in landing.rglob("*.jpg")
        if path.stat().st_size > 0
    }


def test_after_moves_deletions_a_rewrite_and_additions_the_pca_holds_exactly_the_landing_folder(
    changed_demo: DemoRun, landing: Path
) -> None:
    assert changed_demo.state == "success", changed_demo.log_file.read_text()[-5000:]
    pca = pd.read_parquet(changed_demo.output_dir / "pca")
    csv = pd.read_csv(changed_demo.output_dir / "report" / "pca_features.csv")

    for output in (pca, csv):
        keys = output["path"].str.split(f"{BUCKET}/images/", n=1, regex=False).str[1]
        assert sorted(keys) == sorted(landing_images(landing))
        assert dict(zip(keys, output["label"], strict=True)) == landing_images(landing)


def test_only_what_changed_is_featurized_and_removals_are_logged(
    changed_demo: DemoRun, landing_changes: dict, landing: Path, state_dir: Path
) -> None:
    summary = changed_demo.summary
    log = changed_demo.log_file.read_text()

    assert (summary["uploaded"], summary["removed"]) == (4, 2)
    assert summary["featurized"] == len(landing_changes["featurized"]) == 4
    assert summary["reused"] == len(landing_images(landing)) - 4
    assert summary["cluster_created"] is True
    for key in landing_changes["removed"]:
        assert f"Removed s3://{BUCKET}/images/{key}: no longer in the landing folder" in log
    assert "featurized 4, rejected 0" in step_stdout(state_dir, changed_demo)


def test_a_run_with_nothing_new_creates_no_cluster_and_reuses_the_last_outputs(
    changed_demo: DemoRun, unchanged_demo: DemoRun, landing: Path
) -> None:
    summary = unchanged_demo.summary
    log = unchanged_demo.log_file.read_text()

    assert unchanged_demo.state == "success", log[-5000:]
    assert unchanged_demo.clusters == {}
    assert (summary["uploaded"], summary["removed"], summary["featurized"]) == (0, 0, 0)
    assert summary["reused_run_id"] == changed_demo.run_id
    assert summary["cluster_created"] is False
    assert f"Nothing changed since run {changed_demo.run_id}" in log
    assert f"reused run {changed_demo.run_id}'s outputs" in log
    assert len(pd.read_parquet(unchanged_demo.output_dir / "pca")) == len(landing_images(landing))


def test_the_demo_summary_says_what_was_uploaded_removed_featurized_and_reused(
    changed_demo: DemoRun, unchanged_demo: DemoRun, landing: Path
) -> None:
    n_images = len(landing_images(landing))

    changed = summary(changed_demo, "none", 60)
    unchanged = summary(unchanged_demo, "none", 10)

    assert f"images: uploaded 4, removed 2, featurized 4, reused {n_images - 4}, rejected 1" in changed
    assert "clusters: j-" in changed
    assert f"images: uploaded 0, removed 0, featurized 0, reused {n_images}, rejected 1" in unchanged
    assert f"nothing changed: reused the outputs of run {changed_demo.run_id}" in unchanged
    assert "clusters: none" in unchanged
    assert "cost: $0, no cluster" in unchanged


def test_the_demo_run_plans_one_node_and_shows_its_bill_from_the_cluster_s_timeline(first_demo: DemoRun) -> None:
    assert first_demo.summary is not None
    bill, size = first_demo.summary["cost"], first_demo.summary["cluster_size"]

    assert size["core_count"] == 0
    assert (bill["nodes"], bill["markets"], bill["final"]) == ({"m5.xlarge": 1}, {"ON_DEMAND": 1}, True)
    assert 0 < bill["usd"] < 0.1
    assert bill["cluster"]["id"] == next(iter(first_demo.clusters))
    assert "node-hours (1 m5.xlarge on_demand) at the prices of " in summary(first_demo, "none", 60)


def test_an_empty_landing_folder_is_refused_in_one_line_and_removes_nothing(
    unchanged_demo: DemoRun, landing: Path, state_dir: Path, project_node_dir: Path, tmp_path: Path
) -> None:
    images_before = saved_objects(state_dir, "images/")
    n_images = len(list(landing.rglob("*.jpg")))
    (tmp_path / "empty").mkdir()

    refused = run_demo(tmp_path / "empty", tmp_path / "out", state_dir, weights="none", node_dir=project_node_dir)

    assert refused.state == "failed"
    assert refused.clusters == {}
    message = f"has 0 image(s) and would remove {n_images} of the {n_images} in images/ (100%, above max_removal_share"
    assert message in refused.log_file.read_text()
    assert saved_objects(state_dir, "images/") == images_before
    # The refusal's record: failure.json, and the XCom that Airflow keeps although the task failed (the demo's
    # record when the bucket cannot hold one); the demo's first line is the refusal's.
    assert refused.failure is not None
    assert (refused.failure["cause"], refused.failure["refused_by"]) == ("refused", "upload_new_images")
    airflow_home = {**os.environ, "AIRFLOW_HOME": str(state_dir / "airflow")}
    assert run_xcoms(airflow_home, refused.run_id, REFUSAL_XCOM_KEY) == [refused.failure]
    first_line = failure_summary(refused).splitlines()[0]
    assert first_line.startswith("demo: error: The landing folder has 0 image(s)")
    assert message in first_line


def test_a_failed_step_fails_the_run_with_the_job_s_own_line_first_and_terminates_the_cluster(
    project_node_dir: Path, tmp_path: Path
) -> None:
    # What only the cluster can see: files named as images that none can decode.
    broken = tmp_path / "broken"
    for name in ("Kiwi/0_100.jpg", "Kiwi/1_100.jpg", "Lemon/0_100.png"):
        (broken / name).parent.mkdir(parents=True, exist_ok=True)
        (broken / name).write_bytes(b"not an image at all")

    failed = run_demo(broken, tmp_path / "out", tmp_path / "state", weights="none", node_dir=project_node_dir)

    job_error = "extract_features: error: no image could be decoded: all 3 under --images s3://fruits-demo/images/"
    assert failed.state == "failed"
    assert list(failed.clusters.values()) == ["TERMINATED"]
    assert failed.failure is not None
    assert failed.failure["summary"].startswith(job_error)
    assert failed.failure["emr_reason"].startswith("EMR step extract_features")
    stderr = next(log for log in failed.failure["logs"] if log["name"].startswith("stderr"))
    assert stderr["tail"].endswith("Command exiting with ret '2'")
    demo_says = failure_summary(failed).splitlines()
    assert demo_says[0].startswith(f"demo: error: {job_error}")
    assert len([line for line in demo_says if "EMR step extract_features" in line]) == 1
    assert failed.output_dir is None


def test_a_bootstrap_that_cannot_install_fails_the_run_before_any_step_and_the_demo_says_why(
    landing: Path, tmp_path: Path, project_env: dict[str, str]
) -> None:
    # A checkout whose nodes' bootstrap requirements (the lean ones and the primary's: the endpoint's node is
    # the primary, lean when the model is cached) hold a line uv cannot parse; its own state, so a fresh node.
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO_ROOT, checkout, ignore=shutil.ignore_patterns(*NOT_IN_A_CHECKOUT))
    (checkout / ".venv").symlink_to(REPO_ROOT / ".venv")
    for name in (wheelhouse.NODES_REQUIREMENTS, wheelhouse.PRIMARY_REQUIREMENTS):
        requirements = checkout / "bootstrap" / name
        requirements.write_text(requirements.read_text() + "this is not a requirement!\n")
    # The wheelhouse of that lock, as the one publication would leave it: this lock's wheels under its key.
    built = wheelhouse.Wheelhouse.of(REPO_ROOT / "bootstrap")
    broken = wheelhouse.Wheelhouse.of(checkout / "bootstrap", tmp_path / "wheelhouse")
    broken.local_dir.mkdir(parents=True)
    for layer in wheelhouse.LAYERS:
        (broken.local_dir / layer).symlink_to(built.local_dir / layer)
    python_path = os.pathsep.join(str(checkout / folder) for folder in ("spark_jobs", "plugins", ""))
    state, out = tmp_path / "state", tmp_path / "out"
    command = ["-m", "tools.demo", "--images", str(landing), "--out", str(out), "--state-dir", str(state)]

    demo = subprocess.run(
        [sys.executable, *command, "--weights", "none"],
        cwd=checkout,
        env={**project_env, "PYTHONPATH": python_path, wheelhouse.WHEELHOUSE_DIR_ENV: str(tmp_path / "wheelhouse")},
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
    # The bootstrap's one line (uv's own error stays in the node's install.log).
    cannot_install = re.compile(r"the nodes' wheelhouse s3://\S+ does not hold the wheels of s3://\S+/requirements")
    assert cannot_install.search(demo.stderr)
    assert "BOOTSTRAP_FAILURE" in task_log
    assert cannot_install.search(task_log)
    logs = [key.split("/")[2:] for key, _ in saved_objects(state, "logs/")]
    assert ["node", "bootstrap-actions", "1", "stderr.gz"] in [parts[:1] + parts[2:] for parts in logs]
    assert not [parts for parts in logs if parts[0] == "steps"]


def test_ctrl_c_during_a_step_stops_every_process_the_demo_started(
    landing: Path, project_node_dir: Path, tmp_path: Path, project_env: dict[str, str]
) -> None:
    command = [sys.executable, "-m", "tools.demo", "--images", str(landing), "--out", str(tmp_path / "out")]
    # The session's node, where the cluster's venv is already built, as a second `make demo` finds it.
    (tmp_path / "state" / "aws").mkdir(parents=True)
    (tmp_path / "state" / "aws" / "node").symlink_to(project_node_dir)
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
