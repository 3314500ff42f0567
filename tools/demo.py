"""`make demo`: the real fruits_pipeline DAG, end to end on this machine, against an embedded AWS endpoint.

    python -m tools.demo [--images DIR] [--out demo-output] [--state-dir .local-aws] [--weights W]

1. starts the embedded AWS endpoint (moto's S3 and EMR on 127.0.0.1, EMR steps run with local Spark),
   and creates the demo bucket in eu-west-1;
2. points a private Airflow (``.airflow/``, SQLite) at it: only the ``aws_default`` connection's
   ``endpoint_url`` and the ``fruits_pipeline`` Variable differ from a run on AWS;
3. runs ``airflow dags test fruits_pipeline``: upload, cluster, steps, sensors, check, teardown;
4. copies the run's outputs (or, when nothing changed, those of the run it reused) to ``--out`` and
   prints a summary from the run's ``summary.json``: images uploaded, removed, featurized and reused,
   and the clusters created (``clusters: none`` when nothing changed);
5. stops the endpoint, also on failure or Ctrl-C. S3 is kept in ``--state-dir``, so a second demo
   over the same landing folder uploads nothing and creates no cluster. The compiled models go both
   ways between the bucket's ``artifacts/models/`` and the local model cache (``$FRUITS_MODEL_CACHE``,
   else ``~/.cache/fruits-pipeline/models``), so a model is compiled once per machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.client import BaseClient

from fruits_airflow.paths import RunPaths
from fruits_airflow.run_failures import REFUSAL_XCOM_KEY, REFUSED
from fruits_airflow.s3_objects import list_objects, read_object
from fruits_contract import Summary
from fruits_spark.model_cache import default_cache_dir
from local_aws import EmbeddedAws
from local_aws.faults import FaultPlan
from tools.imagenet_weights import upload_imagenet_weights
from tools.local_airflow import (
    BUCKET,
    DAG_ID,
    REGION,
    REPO_ROOT,
    airflow,
    airflow_environment,
    choose_weights,
    migrate,
    run_xcoms,
)
from tools.local_provision import provision
from tools.model_cache_sync import download_models, upload_models

log = logging.getLogger("demo")


@dataclass(frozen=True)
class DemoRun:
    """What one demo run produced: the DAG run's state and, when it succeeded, its outputs."""

    state: str
    run_id: str
    log_file: Path
    clusters: dict[str, str]
    output_dir: Path | None = None
    summary: dict[str, Any] | None = None
    failure: dict[str, Any] | None = None
    # The kinds of the faults the endpoint injected (local_aws.faults), in order: none unless a plan named some.
    injected: tuple[str, ...] = ()


def latest_run(env: dict[str, str]) -> tuple[str, str]:
    """``(run_id, state)`` of the newest fruits_pipeline run in the local Airflow."""
    listed = airflow(env, "dags", "list-runs", DAG_ID, "--output", "json")
    if listed.returncode != 0:
        raise RuntimeError(f"airflow dags list-runs failed: {listed.stderr.strip()[-500:]}")
    # Airflow may print warnings before the JSON document; it is the last line that starts with '['.
    documents = [line for line in listed.stdout.splitlines() if line.startswith("[")]
    runs = json.loads(documents[-1]) if documents else []
    if not runs:
        raise RuntimeError("airflow dags test left no DAG run behind")
    newest = max(runs, key=lambda run: run.get("start_date") or run.get("logical_date") or "")
    return newest["run_id"], newest["state"]


def download_prefix(s3: BaseClient, prefix: str, target: Path) -> None:
    """Copy every object under ``s3://BUCKET/prefix`` into ``target``."""
    for obj in list_objects(s3, BUCKET, prefix):
        local = target / obj.key[len(prefix) :]
        local.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(BUCKET, obj.key, str(local))


def collect_outputs(s3: BaseClient, out_dir: Path, paths: RunPaths) -> tuple[Path, dict[str, Any]]:
    """Copy the run's ``runs/<key>/`` to ``out_dir/<key>/``, with the reused run's pca/ and report/ if it
    reused another run's outputs; returns the folder and the run's summary."""
    target = out_dir / paths.run_key
    shutil.rmtree(target, ignore_errors=True)
    download_prefix(s3, paths.run_prefix, target)
    run_summary = json.loads((target / paths.summary_key.removeprefix(paths.run_prefix)).read_text())
    for name, uri in (("pca", run_summary[Summary.OUTPUTS]["pca"]), ("report", run_summary[Summary.OUTPUTS]["report"])):
        prefix = uri.removeprefix(f"s3://{BUCKET}/")
        if not prefix.startswith(paths.run_prefix):
            download_prefix(s3, prefix, target / name)
    return target, run_summary


def read_failure(s3: BaseClient, paths: RunPaths, env: dict[str, str], run_id: str) -> dict[str, Any] | None:
    """The failed run's record: ``failure.json`` (report_failure's, or a refusal's before any cluster), else the
    refusal a task pushed to XCom (a bucket that is missing, outside the EU or denied holds no failure.json)."""
    body = read_object(s3, BUCKET, paths.failure_key)
    if body is not None:
        return json.loads(body)
    try:
        refusals = run_xcoms(env, run_id, REFUSAL_XCOM_KEY)
    except RuntimeError as error:  # the run's failure stands; only its line is missing
        log.warning("%s", error)
        return None
    return refusals[0] if refusals else None


def failure_summary(run: DemoRun, tail_lines: int = 5) -> str:
    """Why the run failed, from its failure report: the job's own reason, EMR's, then the last lines of the logs."""
    where = f"DAG run {run.run_id} ended '{run.state}'; see {run.log_file}"
    if run.failure is None:
        return f"demo: error: {where}"
    # The refusal's or the failed job's own line first (or EMR's reason when the job wrote none), then EMR's.
    lines = [f"demo: error: {run.failure['summary']}", f"  {where}"]
    if run.failure.get("cause") == REFUSED:
        lines.append(f"  refused by {run.failure.get('refused_by')} before any cluster: nothing was spent")
    if run.failure.get("emr_reason") not in (None, run.failure["summary"]):
        lines.append(f"  {run.failure['emr_reason']}")
    for log in run.failure.get("logs") or []:
        tail = [line for line in (log.get("tail") or "").splitlines() if line.strip()][-tail_lines:]
        lines.append(f"  {log['name']} ({log['uri']}):")
        lines.extend(f"    {line}" for line in tail or ["(not archived)" if log.get("tail") is None else "(empty)"])
    return "\n".join(lines)


def summary(run: DemoRun, weights: str, seconds: float) -> str:
    output_dir = run.output_dir
    assert output_dir is not None, "only a successful run, whose outputs were copied, is summarized"
    assert run.summary is not None, "a successful run has a summary"
    report = json.loads((output_dir / "report" / "explained_variance.json").read_text())
    k, done = report["k"], run.summary
    weights_note = "" if weights == "imagenet" else " (random: no ImageNet weights file in the Keras cache)"
    reused = done[Summary.REUSED_RUN_ID]
    clusters = ", ".join(f"{cluster} {state}" for cluster, state in sorted(run.clusters.items())) or "none"
    return "\n".join(
        [
            f"fruits_pipeline ran in {seconds:.0f} s with MobileNetV2 weights '{weights}'{weights_note}",
            f"  images: uploaded {done[Summary.UPLOADED]}, removed {done[Summary.REMOVED]}, "
            f"featurized {done[Summary.FEATURIZED]}, reused {done[Summary.REUSED]}, "
            f"rejected {done[Summary.REJECTED]}; {done[Summary.N_IMAGES]} in the PCA",
            *([f"  nothing changed: reused the outputs of run {reused}"] if reused else []),
            f"  PCA: k = {k} components keep {report['cumulative'][k - 1]:.1%} of the variance",
            f"  outputs: {output_dir}/ (pca/ parquet, report/ CSV and JSON)",
            f"  plots:   {output_dir}/report/cumulative_variance.png",
            f"           {output_dir}/report/pca_scatter.png",
            f"  clusters: {clusters}",
            f"  cost: {cost_line(done)}",
        ]
    )


def cost_line(done: dict[str, Any]) -> str:
    """The run's bill from its summary: USD, node-hours, the nodes by type and market, and the cluster's size."""
    bill = done.get(Summary.COST) or {}
    if not bill.get("lines"):
        return "$0, no cluster"
    nodes = ", ".join(f"{line['nodes']} {line['instance_type']} {line['market'].lower()}" for line in bill["lines"])
    size = (done.get(Summary.CLUSTER_SIZE) or {}).get("reason")
    return (
        f"${bill['usd']:.4f} for {bill['node_hours']:.4f} node-hours ({nodes}) at the prices of "
        f"{bill['prices_read_on']}" + (f"; size: {size}" if size else "")
    )


def run_demo(
    images: Path,
    out_dir: Path,
    state_dir: Path,
    weights: str,
    extra_variable: dict | None = None,
    node_dir: Path | None = None,
    faults: FaultPlan | None = None,
) -> DemoRun:
    """Run the DAG once against a fresh embedded endpoint; the endpoint is stopped on the way out.

    ``node_dir`` is the endpoint's node (local_aws.node), where the bootstrap builds the venv; by
    default ``<state dir>/aws/node``. ``faults`` are the endpoint's (local_aws.faults; by default
    those of ``$LOCAL_AWS_FAULTS``, else none).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    airflow_home = state_dir / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    log_file = out_dir / "airflow-dags-test.log"
    with EmbeddedAws(port=0, region=REGION, state_dir=state_dir / "aws", node_dir=node_dir, faults=faults) as aws:
        s3 = aws.client("s3")
        stack_variable = provision(s3, aws.client("emr"), aws.client("ec2"), aws.client("iam"), BUCKET, REGION)
        env = airflow_environment(airflow_home, aws.endpoint_url, images, {**stack_variable, **(extra_variable or {})})
        migrate(env)
        models = Path(default_cache_dir())
        upload_models(s3, BUCKET, models)
        upload_imagenet_weights(s3, BUCKET)
        log.info("running the DAG; its log: %s", log_file)
        conf = json.dumps({"weights": weights})
        airflow(env, "dags", "test", DAG_ID, "--conf", conf, log_file=log_file)
        download_models(s3, BUCKET, models)
        run_id, state = latest_run(env)
        clusters = {
            cluster["Id"]: cluster["Status"]["State"] for cluster in aws.client("emr").list_clusters()["Clusters"]
        }
        paths = RunPaths.for_run(BUCKET, run_id, reprocess_all=False, weights=weights)
        injected = tuple(fault.kind for fault in aws.injected)
        if state != "success":
            failure = read_failure(s3, paths, env, run_id)
            return DemoRun(state, run_id, log_file, clusters, failure=failure, injected=injected)
        output_dir, run_summary = collect_outputs(s3, out_dir, paths)
    return DemoRun(state, run_id, log_file, clusters, output_dir, run_summary, injected=injected)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="landing folder of <label>/<image> files")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "demo-output", help="where outputs are copied")
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".local-aws", help="kept between demos")
    parser.add_argument("--weights", help="imagenet or none (default: imagenet if cached by Keras, else none)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.images.is_dir():
        parser.error(f"--images {args.images} is not a folder; pass a folder of <label>/<image> files")
    weights = args.weights or choose_weights()
    started = time.monotonic()
    try:
        run = run_demo(args.images.resolve(), args.out.resolve(), args.state_dir.resolve(), weights)
    except KeyboardInterrupt:
        print("demo: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    if run.state != "success" or run.output_dir is None:
        print(failure_summary(run), file=sys.stderr)
        return 1
    print(summary(run, weights, time.monotonic() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
