"""How `make bench` runs each job and what it measures of one run, apart from what it makes of the figures.

Every job runs as users run it, through the venv's ``spark-submit`` (local[*]), and is measured as a
whole process tree: wall time, CPU time, peak summed RSS, and the CPU time other processes took
meanwhile (what makes a run noisy). The jobs: this tree's extract_features, the same job from another
``spark_jobs`` tree (``--before``, to compare a change side by side in one run), the baseline
(tools/baseline_extract.py) and the empty job (tools/empty_spark_job.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tools.process_tree import ProcessTreeSampler

ROOT = Path(__file__).resolve().parents[1]
SPARK_JOBS = ROOT / "spark_jobs"
BASELINE_JOB = ROOT / "tools" / "baseline_extract.py"
EMPTY_JOB = ROOT / "tools" / "empty_spark_job.py"
SPARK_SUBMIT = Path(sys.executable).parent / "spark-submit"
IMAGE_SIZE = 224
GB = 1e9


@dataclass(frozen=True)
class JobRun:
    """One spark-submit: wall time, CPU time of its process tree, its peak summed RSS, the CPU time
    that other processes took meanwhile (what makes the run noisy), and the job's ``--summary-json``."""

    wall_s: float
    cpu_s: float
    peak_memory_gb: float
    other_cpu_s: float
    summary: dict


def spark_submit(script: Path, args: list[str], work: Path, name: str, env: dict[str, str] | None = None) -> JobRun:
    """Run one job as users do (the venv's spark-submit, local[*]) and measure the whole process tree.

    The job writes its summary to ``work/<name>.json``, its log goes to ``work/<name>.log``.

    :param env: variables added to the environment (the AWS ones that point the job at an endpoint).
    """
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"} | (env or {})
    summary_path, log_path = work / f"{name}.json", work / f"{name}.log"
    summary_path.unlink(missing_ok=True)
    command = [str(SPARK_SUBMIT), str(script), *args, "--summary-json", str(summary_path)]
    busy_before, started = _machine_busy_s(), time.monotonic()
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        with ProcessTreeSampler(process.pid) as tree:
            returncode = process.wait()
    wall, busy = time.monotonic() - started, _machine_busy_s() - busy_before
    if returncode != 0 or not summary_path.exists():
        text = log_path.read_text()
        raise RuntimeError(f"{script.name} failed with exit code {returncode}; see {log_path}:\n{text[-2000:]}")
    summary = json.loads(summary_path.read_text())
    return JobRun(wall, tree.cpu_s, tree.peak_rss_bytes / GB, max(0.0, busy - tree.cpu_s), summary)


def _machine_busy_s() -> float:
    """CPU seconds every process on the machine has used since boot (/proc/stat, idle time excluded)."""
    user, nice, system, _idle, _iowait, irq, softirq = map(int, Path("/proc/stat").read_text().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def project_job(
    images: str,
    features: str,
    work: Path,
    name: str,
    env: dict[str, str] | None = None,
    spark_jobs: Path = SPARK_JOBS,
) -> JobRun:
    """extract_features with ``--weights none`` and the bench's own model cache (filled by the first run).

    :param spark_jobs: the ``spark_jobs`` tree to run the job from: the script's folder is the first
        on its Python path, so it imports that tree's ``fruits_spark``, not this one's.
    """
    args = ["--images", images, "--features", features, "--weights", "none"]
    return spark_submit(
        spark_jobs / "extract_features.py", [*args, "--model-cache", str(work / "models")], work, name, env
    )


def baseline_job(images: Path, features: Path, work: Path, name: str) -> JobRun:
    args = ["--images", str(images), "--features", str(features), "--image-size", str(IMAGE_SIZE)]
    return spark_submit(BASELINE_JOB, args, work, name, {"PYTHONPATH": str(SPARK_JOBS)})


def empty_job(work: Path, name: str) -> JobRun:
    """The empty Spark job, with this tree's session settings (its executors find them on PYTHONPATH)."""
    return spark_submit(EMPTY_JOB, [], work, name, {"PYTHONPATH": os.pathsep.join((str(SPARK_JOBS), str(ROOT)))})


def run_figures(run: JobRun) -> dict:
    """The process tree's figures, the phases, and how many images were featurized (a pca run featurizes none)."""
    figures: dict = {key: round(value, 3) for key, value in asdict(run).items() if key != "summary"}
    if "n_featurized" in run.summary:
        figures["n_featurized"] = run.summary["n_featurized"]
    return figures | {"seconds": run.summary["seconds"]}
