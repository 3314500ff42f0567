"""`make chaos RUNS=N SEED=S`: the real DAG, N times, through random faults and landing-folder changes.

    python -m tools.chaos [--runs 5] [--seed S] [--images 12] [--state-dir DIR] [--weights none]

Each run is a `make demo` run (tools.demo: `airflow dags test` on a fresh embedded endpoint over the
same saved S3), with one fault drawn from :data:`FAULTS` injected by the endpoint (local_aws.faults),
after random changes to the landing folder (images added, moved to another label, deleted, rewritten).
The last run injects no fault, so that it shows what the faults left behind. After each run:

- no cluster is left active;
- a failed run's failure report says why in one line;
- after a successful run, the features are the landing folder: each image in S3 is the landing
  folder's, and has exactly one current row in the features dataset (none lost, none doubled).

It ends with a table of the faults and outcomes and a last line of counts, and prints the seed, so
that a failure replays with ``--seed``. A run whose fault never struck (a kill at ``extract_features``
when nothing was left to featurize) says "fault not injected", and is not counted as a fault survived.
Exit code 1 when an image was lost, a row doubled, a cluster leaked, or a failed run gave no reason.
"""

from __future__ import annotations

import argparse
import io
import logging
import random
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from fruits_airflow.paths import RunPaths
from fruits_airflow.s3_objects import list_objects
from local_aws import EmbeddedAws
from local_aws.faults import FaultPlan, ProcessFault
from tools.demo import DemoRun, run_demo
from tools.local_airflow import BUCKET, REGION
from tools.sample_images import FRUITS, generate

log = logging.getLogger("chaos")

ACTIVE_STATES = frozenset({"STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING"})
PCA_WRITE = f"PUT /{BUCKET}/runs/"
# The executors' fetch of an image: a node lost there is lost mid-task.
IMAGE_FETCH = f"GET /{BUCKET}/images/"
SPOT_NODE_LOST = "spot core node lost during extract_features"
# The Variable keys a fault's run adds: a node to lose needs core nodes, on spot.
FAULT_VARIABLES = {SPOT_NODE_LOST: {"single_node_max_images": 0, "core_market": "SPOT"}}
N_LABELS = 3


def features_commit(weights: str) -> str:
    """The request of extract_features' output committer that moves a task's files into the job's folder:
    a run killed right after it leaves a committed task's output in ``_temporary/`` and no job commit."""
    paths = RunPaths.for_run(BUCKET, "chaos", reprocess_all=False, weights=weights)
    return f"PUT /{BUCKET}/{paths.features_prefix}_temporary/0/task_"


def _faults(seed: int, weights: str = "none") -> dict[str, FaultPlan]:
    return {
        "none": FaultPlan(seed=seed),
        "s3 errors": FaultPlan(seed=seed, s3_error_share=0.2),
        "emr throttling": FaultPlan(seed=seed, emr_throttle_share=0.3),
        "extract_features killed mid-write": FaultPlan(
            seed=seed, kill_step=ProcessFault(step="extract_features", at=features_commit(weights))
        ),
        "cluster terminated during pca": FaultPlan(
            seed=seed, terminate_during_step=ProcessFault(step="pca", at=PCA_WRITE)
        ),
        "pca killed mid-write": FaultPlan(seed=seed, kill_step=ProcessFault(step="pca", at=PCA_WRITE)),
        SPOT_NODE_LOST: FaultPlan(seed=seed, lose_node=ProcessFault(step="extract_features", at=IMAGE_FETCH)),
    }


FAULTS = list(_faults(0))


@dataclass
class Outcome:
    """One run of the chaos: what was done to it and what came of it."""

    run: int
    fault: str
    changes: str
    state: str = ""
    reason: str = ""
    lost: int = 0
    duplicated: int = 0
    leaked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    injected: list[str] = field(default_factory=list)

    @property
    def fault_not_injected(self) -> bool:
        """A fault was drawn but the endpoint never injected it: the run says nothing of its recovery."""
        return self.fault != "none" and not self.injected

    @property
    def fault_survived(self) -> bool:
        """A fault struck and the run ended as it must: a success, or a failure saying why, and nothing lost."""
        return bool(self.injected) and not (self.lost or self.duplicated or self.leaked or self.problems)


def change_landing(landing: Path, rng: random.Random, next_number: Callable[[], int]) -> str:
    """Random adds, moves, deletions and rewrites in the landing folder; returns what was done."""
    images = sorted(landing.glob("*/*.jpg"))
    done = Counter[str]()
    labels = [fruit.label for fruit in FRUITS[:N_LABELS]]
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(["add", "move", "delete", "rewrite"])
        if kind == "add" or len(images) < 4:
            with tempfile.TemporaryDirectory() as scratch:
                (made,) = generate(Path(scratch), 1, n_labels=1, seed=next_number())
                target = landing / rng.choice(labels) / f"added_{next_number()}.jpg"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(made, target)
            images.append(target)
            done["add"] += 1
            continue
        image = images.pop(rng.randrange(len(images)))
        if kind == "move":
            others = [label for label in labels if label != image.parent.name]
            target = landing / rng.choice(others) / f"moved_{next_number()}_{image.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            image.rename(target)
            images.append(target)
        elif kind == "delete":
            image.unlink()
        else:
            with tempfile.TemporaryDirectory() as scratch:
                (made,) = generate(Path(scratch), 1, n_labels=1, seed=next_number())
                shutil.copy(made, image)
            images.append(image)
        done[kind] += 1
    return ", ".join(f"{kind} {count}" for kind, count in sorted(done.items()))


def check_features(aws: EmbeddedAws, landing: Path, weights: str) -> tuple[int, int, list[str]]:
    """``(lost, duplicated, problems)``: the S3 images against the landing folder, the features against both."""
    s3 = aws.client("s3")
    problems = []
    in_s3 = {obj.key.removeprefix("images/"): obj for obj in list_objects(s3, BUCKET, "images/")}
    local = {path.relative_to(landing).as_posix(): path for path in landing.glob("*/*") if path.is_file()}
    if set(in_s3) != set(local):
        problems.append(f"images/ differs from the landing folder: {sorted(set(in_s3) ^ set(local))[:5]}")
    problems += [
        f"{key}: size differs" for key in set(in_s3) & set(local) if in_s3[key].size != local[key].stat().st_size
    ]
    versions = {}
    for key in in_s3:
        head = s3.head_object(Bucket=BUCKET, Key=f"images/{key}")
        versions[f"s3://{BUCKET}/images/{key}"] = (head["ContentLength"], int(head["LastModified"].timestamp() * 1000))
    paths = RunPaths.for_run(BUCKET, "chaos", reprocess_all=False, weights=weights)
    rows: Counter[tuple[str, int, int]] = Counter()
    for obj in list_objects(s3, BUCKET, paths.features_prefix):
        name = obj.key[len(paths.features_prefix) :]
        if not name.endswith(".parquet") or name.startswith(("_", ".")):
            continue
        body = s3.get_object(Bucket=BUCKET, Key=obj.key)["Body"].read()
        table = pq.read_table(io.BytesIO(body), columns=["path", "size", "modified"])
        for path, size, modified in zip(
            *(table.column(c).to_pylist() for c in ("path", "size", "modified")), strict=True
        ):
            rows[(path.replace("s3a://", "s3://"), size, modified)] += 1
    current = {version: rows[(path, *version)] for path, version in versions.items()}
    lost = sum(1 for count in current.values() if count == 0)
    duplicated = sum(count - 1 for count in current.values() if count > 1)
    return lost, duplicated, problems


def one_line_reason(run: DemoRun) -> str:
    summary = (run.failure or {}).get("summary") or ""
    return summary if summary and "\n" not in summary else ""


def chaos(
    runs: int,
    seed: int,
    n_images: int,
    state_dir: Path,
    weights: str,
    node_dir: Path | None = None,
    fault_names: list[str] | None = None,
) -> list[Outcome]:
    """Run the DAG ``runs`` times through seeded faults and landing changes; the outcome of each.

    ``node_dir`` is the endpoint's node, where the bootstrap builds the venv (tools.demo.run_demo).
    ``fault_names`` (of :data:`FAULTS`) are the runs' faults, in order, instead of random ones.
    """
    rng = random.Random(seed)
    counter = iter(range(seed * 1000, seed * 1000 + 1_000_000))
    landing = state_dir / "landing"
    if not landing.exists():
        generate(landing, n_images, n_labels=N_LABELS, seed=seed)
    faults = _faults(seed, weights)
    outcomes = []
    for number in range(1, runs + 1):
        drawn = rng.choice(FAULTS)
        fault = fault_names[number - 1] if fault_names else "none" if number == runs else drawn
        changes = "first run" if number == 1 else change_landing(landing, rng, lambda: next(counter))
        outcome = Outcome(number, fault, changes)
        log.info("run %d/%d: fault %s; landing: %s", number, runs, fault, changes)
        run = run_demo(
            landing,
            state_dir / "out",
            state_dir,
            weights,
            extra_variable=FAULT_VARIABLES.get(fault),
            node_dir=node_dir,
            faults=faults[fault],
        )
        outcome.state = run.state
        outcome.injected = list(run.injected)
        outcome.leaked = sorted(cluster for cluster, state in run.clusters.items() if state in ACTIVE_STATES)
        if run.state != "success":
            outcome.reason = one_line_reason(run)
            if not outcome.reason:
                outcome.problems.append(f"the failed run gave no one-line reason (see {run.log_file})")
        else:
            with EmbeddedAws(port=0, region=REGION, state_dir=state_dir / "aws", faults=FaultPlan()) as aws:
                outcome.lost, outcome.duplicated, problems = check_features(aws, landing, weights)
            outcome.problems += problems
        outcomes.append(outcome)
        log.info("run %d: %s", number, outcome)
    return outcomes


def report(outcomes: list[Outcome], seed: int) -> str:
    width = max(len(fault) for fault in FAULTS)
    lines = [
        f"{'run':>3}  {'fault':<{width}}  {'outcome':<8}  {'lost':>4}  {'dup':>3}  leaked  landing changes / reason"
    ]
    for o in outcomes:
        note = o.reason or o.changes
        if o.fault_not_injected:
            note = f"fault not injected; {note}"
        clusters = ",".join(o.leaked) or "-"
        lines.append(
            f"{o.run:>3}  {o.fault:<{width}}  {o.state:<8}  {o.lost:>4}  {o.duplicated:>3}  {clusters:<6}  {note}"
        )
        lines += [f"     problem: {problem}" for problem in o.problems]
    lost = sum(o.lost for o in outcomes)
    duplicated = sum(o.duplicated for o in outcomes)
    leaked = sum(len(o.leaked) for o in outcomes)
    not_injected = sum(o.fault_not_injected for o in outcomes)
    lines.append(
        f"faults injected {sum(bool(o.injected) for o in outcomes)}, survived {sum(o.fault_survived for o in outcomes)}"
        f", not injected {not_injected}"
    )
    lines.append(f"seed {seed}")
    lines.append(
        f"runs {len(outcomes)}, failed {sum(o.state != 'success' for o in outcomes)}, images lost {lost}, "
        f"duplicated rows {duplicated}, leaked clusters {leaked}, problems {sum(len(o.problems) for o in outcomes)}"
    )
    return "\n".join(lines)


def passed(outcomes: list[Outcome]) -> bool:
    final = outcomes[-1]
    return final.state == "success" and not any(o.lost or o.duplicated or o.leaked or o.problems for o in outcomes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="DAG runs (default 5); the last injects no fault")
    parser.add_argument("--seed", type=int, help="replays a chaos run (default: a random one, printed)")
    parser.add_argument("--images", type=int, default=12, help="images in the first landing folder (default 12)")
    parser.add_argument("--state-dir", type=Path, help="kept S3, Airflow and landing folder (default: temporary)")
    parser.add_argument("--weights", default="none", help="MobileNetV2 weights (default none: no download)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.images < 4:
        parser.error("--runs must be at least 1 and --images at least 4")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    print(f"chaos: seed {seed}", flush=True)
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="fruits-chaos-"))
    try:
        outcomes = chaos(args.runs, seed, args.images, state_dir.resolve(), args.weights)
    except KeyboardInterrupt:
        print(f"chaos: interrupted; replay with --seed {seed}", file=sys.stderr)
        return 130
    finally:
        if args.state_dir is None:
            shutil.rmtree(state_dir, ignore_errors=True)
    print(report(outcomes, seed))
    return 0 if passed(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
