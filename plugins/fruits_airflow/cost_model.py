"""What a run of N new images would cost and take, before and after sizing the cluster to the work.

The model runs the pipeline's own code on a modelled timeline: ``cluster.size_cluster`` chooses the
nodes as ``plan_run`` does, and ``cost.bill`` prices them as a run's summary does. Only the timeline is
assumed, once, below; every scenario uses the same assumptions.

```bash
PYTHONPATH=spark_jobs:plugins .venv/bin/python -m fruits_airflow.cost_model 2000 90000
```
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from fruits_airflow import cost
from fruits_airflow.cluster import size_cluster
from fruits_airflow.config import ConfigError, PipelineConfig

# The start-time assumption, stated once: EC2 instances and EMR's setup of Hadoop and Spark take 7 to 10
# minutes; the midpoint.
START_MINUTES = 8.5
# The bootstrap action, which the cluster waits for on its slowest node: with the model cached every node installs
# the lean pins from the bucket, 49.5 to 64.7 s from empty caches (tools.node_bootstrap --compare, 2026-12-04,
# docs/performance.md); 40 s was a warm installer cache, which a new EMR node never has.
BOOTSTRAP_MINUTES = 1.1
# extract_features besides featurizing: YARN's start of the application and the job's fixed cost.
EXTRACT_OVERHEAD_MINUTES = 0.9
PCA_MINUTES = 1.5
# watch_steps notices the end (polls every 30 s), then the termination.
END_MINUTES = 1.5
# make bench: 161 images/s per measured core; an m5 vCPU is a hyperthread, taken as half a core.
IMAGES_PER_VCPU_SECOND = 80.5
VCPUS = {"m5.xlarge": 4, "m5a.xlarge": 4, "m6i.xlarge": 4, "m5.2xlarge": 8}
T0 = datetime(2026, 12, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ModelledRun:
    """One scenario's run: its nodes, how long it takes and what it costs."""

    scenario: str
    images: int
    nodes: str
    featurize_seconds: float
    minutes: float
    usd: float


def featurizing_vcpus(config: PipelineConfig, core_count: int) -> int:
    """The executors' vCPUs: the primary's in a primary-only cluster (its YARN hosts them), else the core nodes'."""
    if core_count == 0:
        return VCPUS[config.primary_instance_type]
    return core_count * VCPUS[config.core_instance_type]


def model_run(scenario: str, config: PipelineConfig, images: int) -> ModelledRun:
    """The run of ``images`` new images on the cluster ``config`` sizes, billed by ``cost.bill``."""
    size = size_cluster(config, images)
    featurize_seconds = images / (IMAGES_PER_VCPU_SECOND * featurizing_vcpus(config, size.core_count))
    minutes = (
        START_MINUTES
        + BOOTSTRAP_MINUTES
        + EXTRACT_OVERHEAD_MINUTES
        + featurize_seconds / 60
        + PCA_MINUTES
        + END_MINUTES
    )
    end = T0 + timedelta(minutes=minutes)
    nodes = [cost.Node(config.primary_instance_type, cost.ON_DEMAND, T0, end)]
    nodes += [cost.Node(config.core_instance_type, config.core_market, T0, end)] * size.core_count
    bill = cost.bill(nodes, cost.load_prices(config.prices), config.region, now=end)
    described = ", ".join(f"{line['nodes']} {line['instance_type']} {line['market'].lower()}" for line in bill["lines"])
    return ModelledRun(scenario, images, described, featurize_seconds, minutes, bill["usd"])


def scenarios(config: PipelineConfig) -> dict[str, PipelineConfig]:
    """Before: every run on 1 primary and ``core_count`` on-demand core nodes. After: sized, on demand or spot."""
    return {
        "before": replace(config, single_node_max_images=0, images_per_core_node=1, core_market=cost.ON_DEMAND),
        "after": replace(config, core_market=cost.ON_DEMAND),
        "after, spot core nodes": replace(config, core_market=cost.SPOT),
    }


def table(runs: list[ModelledRun], before: dict[int, ModelledRun]) -> str:
    """The runs as a Markdown table, each against the run before sizing of the same images."""
    lines = [
        "| new images | scenario | nodes | featurizing | run | cost | of before |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for run in runs:
        share = run.usd / before[run.images].usd
        lines.append(
            f"| {run.images:,} | {run.scenario} | {run.nodes} | {run.featurize_seconds:.0f} s | {run.minutes:.1f} min "
            f"| ${run.usd:.3f} | {share:.0%} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fruits_airflow.cost_model", description=__doc__.splitlines()[0])
    parser.add_argument("images", type=int, nargs="+", help="new images to featurize, one run each")
    parser.add_argument("--region", default="eu-west-1")
    args = parser.parse_args(argv)
    config = PipelineConfig(bucket="model", subnet_id="subnet-0", region=args.region, **_NETWORK)
    try:
        runs = [model_run(name, settings, n) for n in args.images for name, settings in scenarios(config).items()]
    except ConfigError as error:
        print(f"cost_model: error: {error}", file=sys.stderr)
        return 2
    before = {run.images: run for run in runs if run.scenario == "before"}
    print(
        f"Assumed: the cluster starts in {START_MINUTES} min, bootstraps in {BOOTSTRAP_MINUTES} min, "
        f"extract_features adds {EXTRACT_OVERHEAD_MINUTES} min, pca {PCA_MINUTES} min, the end {END_MINUTES} min; "
        f"{IMAGES_PER_VCPU_SECOND} images/s per vCPU; prices of {cost.load_prices().read_on} in {args.region}."
    )
    print(table(runs, before))
    return 0


_NETWORK: dict[str, Any] = {"emr_managed_master_security_group": "sg-0", "emr_managed_slave_security_group": "sg-1"}

if __name__ == "__main__":
    sys.exit(main())
