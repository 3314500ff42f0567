"""Measure feature extraction on this machine: the project's job against the usual approach, and its parts.

    python -m tools.bench [--sizes 2048 8192] [--repeats 2] [--out .bench]     (or: make bench)

(a) ceiling: the fastest MobileNetV2 (224x224, ``--weights none``) inference in this one process on
    all cores, no Spark and no decoding: LiteRT at a few batch sizes, Keras ``predict`` for reference.
(b) extract vs baseline: ``spark-submit spark_jobs/extract_features.py`` (its model cached) and
    ``tools/baseline_extract.py`` (a pandas UDF rebuilding Keras's MobileNetV2 from broadcast weights,
    ``model.predict`` per Arrow batch), alternated, on the same generated images at each size; end to
    end wall time, peak memory of the process tree, the marginal rate between the two sizes and the
    fixed cost (end to end minus images over the marginal rate); the project job's phases, from its
    ``--summary-json``.
(c) rerun: the project's job again on its 2,048-image features, which must featurize nothing.
(d) pca: ``spark-submit spark_jobs/pca.py`` on those features.
(e) S3: the project's job with the images in the embedded endpoint's S3 (local_aws) read through its
    API (S3A on the driver, one GET per image on the executors), with no added latency and with S3's
    ~30 ms per request; the featurization phase's images/s of each, their ratio, the image requests
    per new image of a first run, and the image-object requests of a rerun (from the request log).

Other processes on the machine slow any run down, so each job runs ``--repeats`` times and the table
shows medians; the JSON (also written to OUT/results.json) keeps every run. The goals of issue 14 are
checked beside the figures. Benchmarks measure; no test asserts on their timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from local_aws.request_log import requests_under
from tools.process_tree import ProcessTreeSampler
from tools.sample_images import generate

ROOT = Path(__file__).resolve().parents[1]
SPARK_JOBS = ROOT / "spark_jobs"
BASELINE_JOB = ROOT / "tools" / "baseline_extract.py"
SPARK_SUBMIT = Path(sys.executable).parent / "spark-submit"
IMAGE_SIZE = 224
SIZES = (2048, 8192)
CEILING_BATCHES = (1, 4, 16, 32)
CEILING_IMAGES = 256
KERAS_BATCH = 32
GB = 1e9
PROJECT, BASELINE = "project", "baseline"


@dataclass(frozen=True)
class JobRun:
    """One spark-submit: wall time, CPU time of its process tree, its peak summed RSS, the CPU time
    that other processes took meanwhile (what makes the run noisy), and the job's ``--summary-json``."""

    wall_s: float
    cpu_s: float
    peak_memory_gb: float
    other_cpu_s: float
    summary: dict


def _fruits_spark_importable() -> None:
    """``make bench`` puts spark_jobs/ on PYTHONPATH; a bare ``python -m tools.bench`` gets it here."""
    if str(SPARK_JOBS) not in sys.path:
        sys.path.insert(0, str(SPARK_JOBS))


def images_per_second(n_images: int, seconds: list[float]) -> float:
    return n_images / statistics.median(seconds)


def measure_ceiling(repeats: int) -> dict:
    """Images/s of LiteRT at each batch size (all cores) and of Keras ``predict``, on random inputs."""
    _fruits_spark_importable()
    from fruits_spark.inference import Featurizer
    from fruits_spark.model import RANDOM, build_keras_model, to_tflite

    model = build_keras_model(RANDOM, IMAGE_SIZE)
    tflite = to_tflite(model)
    threads = os.cpu_count() or 1
    images = np.random.default_rng(0).uniform(-1, 1, (CEILING_IMAGES, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    litert = {}
    for batch in CEILING_BATCHES:
        featurizer = Featurizer(tflite, num_threads=threads, batch_size=batch)
        featurizer(images[:batch])
        litert[batch] = images_per_second(len(images), [_timed(featurizer, images) for _ in range(repeats + 2)])
    model.predict(images[:KERAS_BATCH], batch_size=KERAS_BATCH, verbose=0)
    keras_runs = [_timed(lambda x: model.predict(x, batch_size=KERAS_BATCH, verbose=0), images) for _ in range(repeats)]
    one_thread = Featurizer(tflite, num_threads=1, batch_size=1)
    one_thread_runs = [_timed(one_thread, images) for _ in range(repeats)]
    best_batch = max(litert, key=litert.__getitem__)
    return {
        "images_per_s": litert[best_batch],
        "runtime": f"LiteRT, {threads} threads, batch {best_batch}",
        "litert_images_per_s_by_batch": litert,
        "litert_one_thread_batch_1_images_per_s": images_per_second(len(images), one_thread_runs),
        "keras_predict_images_per_s": images_per_second(len(images), keras_runs),
        "threads": threads,
    }


def _timed(function, argument) -> float:
    started = time.perf_counter()
    function(argument)
    return time.perf_counter() - started


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


def project_job(images: str, features: str, work: Path, name: str, env: dict[str, str] | None = None) -> JobRun:
    """extract_features with ``--weights none`` and the bench's own model cache (filled by the first run)."""
    args = ["--images", images, "--features", features, "--weights", "none"]
    return spark_submit(
        SPARK_JOBS / "extract_features.py", [*args, "--model-cache", str(work / "models")], work, name, env
    )


def baseline_job(images: Path, features: Path, work: Path, name: str) -> JobRun:
    args = ["--images", str(images), "--features", str(features), "--image-size", str(IMAGE_SIZE)]
    return spark_submit(BASELINE_JOB, args, work, name, {"PYTHONPATH": str(SPARK_JOBS)})


def measure_comparison(images: dict[int, Path], work: Path, repeats: int) -> dict:
    """(b): the project's job and the baseline, alternated, at each size, ``repeats`` times each."""
    warm = project_job(str(images[min(images)]), str(work / "warm-features"), work, "warm-cache")
    if warm.summary["model_source"] not in ("cache", "compiled"):
        raise RuntimeError(f"the warm-up run used no model cache: {warm.summary}")
    runs: dict[str, dict[str, list[dict]]] = {job: {str(n): [] for n in images} for job in (PROJECT, BASELINE)}
    for repeat in range(repeats):
        for n_images, folder in images.items():
            for job in (PROJECT, BASELINE):
                features = work / f"{job}-features-{n_images}"
                for stale in (features, Path(f"{features}_rejects")):
                    shutil.rmtree(stale, ignore_errors=True)
                name = f"{job}-{n_images}-{repeat}"
                if job == PROJECT:
                    run = project_job(str(folder), str(features), work, name)
                    if run.summary["model_source"] != "cache":
                        raise RuntimeError(f"{name} compiled its model; the bench measures cached runs")
                else:
                    run = baseline_job(folder, features, work, name)
                if run.summary["n_featurized"] != n_images:
                    raise RuntimeError(f"{name} featurized {run.summary['n_featurized']} of {n_images} images")
                figures = run_figures(run)
                runs[job][str(n_images)].append(figures)
                print(f"{name}: {json.dumps(figures)}", file=sys.stderr)
    return {"runs": runs, "median": {job: _median_by_size(by_size) for job, by_size in runs.items()}}


def _median_by_size(by_size: dict[str, list[dict]]) -> dict[str, dict]:
    median = {}
    for size, runs in by_size.items():
        median[size] = {
            key: statistics.median(run[key] for run in runs) for key in ("wall_s", "cpu_s", "peak_memory_gb")
        }
        median[size]["seconds"] = {
            phase: statistics.median(run["seconds"].get(phase, 0.0) for run in runs) for phase in runs[0]["seconds"]
        }
    return median


def rate_and_fixed_cost(wall_by_size: dict[int, float]) -> tuple[float, float]:
    """The marginal rate between the smallest and largest sizes, and the fixed cost at the smallest."""
    small, large = min(wall_by_size), max(wall_by_size)
    rate = (large - small) / (wall_by_size[large] - wall_by_size[small])
    return rate, wall_by_size[small] - small / rate


def measure_rerun_and_pca(images: Path, work: Path) -> dict:
    """(c) and (d), once, on a fresh features dataset of ``images``."""
    features, pca = work / "features", work / "pca"
    for stale in (features, Path(f"{features}_rejects"), pca):
        shutil.rmtree(stale, ignore_errors=True)
    first = project_job(str(images), str(features), work, "first")
    rerun = project_job(str(images), str(features), work, "rerun")
    if rerun.summary["n_featurized"] != 0:
        raise RuntimeError(f"the rerun featurized images again; see {work}/rerun.log")
    pca_run = spark_submit(SPARK_JOBS / "pca.py", ["--features", str(features), "--output", str(pca)], work, "pca")
    return {"first": run_figures(first), "rerun": run_figures(rerun), "pca": run_figures(pca_run)}


S3_BUCKET = "fruits-bench"
S3_LATENCY_MS = 30


def measure_s3(images: Path, work: Path, repeats: int) -> dict:
    """(e): the featurization over the endpoint's S3 API, at 0 ms and S3_LATENCY_MS per request, alternated."""
    from local_aws import EmbeddedAws

    files = sorted(p for p in images.rglob("*") if p.is_file())
    runs: dict[str, list[dict]] = {"0": [], str(S3_LATENCY_MS): []}
    with EmbeddedAws() as endpoint:
        s3 = endpoint.client("s3")
        s3.create_bucket(Bucket=S3_BUCKET, CreateBucketConfiguration={"LocationConstraint": endpoint.region})
        for path in files:
            s3.upload_file(str(path), S3_BUCKET, f"images/{path.relative_to(images).as_posix()}")
        aws = endpoint.client_environment()
        images_uri = f"s3://{S3_BUCKET}/images/"
        for repeat in range(repeats):
            for latency_ms in (0, S3_LATENCY_MS):
                features = f"s3://{S3_BUCKET}/features/run-{repeat}-{latency_ms}ms"
                endpoint.latency_seconds = latency_ms / 1000
                endpoint.requests.clear()
                run = project_job(images_uri, features, work, f"s3-{repeat}-{latency_ms}ms", aws)
                image_requests = requests_under(endpoint.requests, S3_BUCKET, "images")
                figures = run_figures(run) | {
                    "phase_images_per_s": run.summary["n_featurized"] / run.summary["seconds"]["featurize"],
                    "image_requests_per_image": len(image_requests) / len(files),
                }
                if repeat == 0 and latency_ms == S3_LATENCY_MS:
                    endpoint.requests.clear()
                    project_job(images_uri, features, work, "s3-rerun", aws)
                    figures["rerun_image_object_requests"] = sum(
                        1 for r in requests_under(endpoint.requests, S3_BUCKET, "images") if r.path.endswith(".jpg")
                    )
                runs[str(latency_ms)].append(figures)
                print(f"s3 run {repeat + 1}/{repeats} at {latency_ms} ms: {json.dumps(figures)}", file=sys.stderr)
    keys = ("wall_s", "phase_images_per_s", "image_requests_per_image")
    median = {latency: {key: statistics.median(run[key] for run in rs) for key in keys} for latency, rs in runs.items()}
    return {"runs": runs, "median": median}


def run_figures(run: JobRun) -> dict:
    """The process tree's figures, the phases, and how many images were featurized (a pca run featurizes none)."""
    figures: dict = {key: round(value, 3) for key, value in asdict(run).items() if key != "summary"}
    if "n_featurized" in run.summary:
        figures["n_featurized"] = run.summary["n_featurized"]
    return figures | {"seconds": run.summary["seconds"]}


def summarize(ceiling: dict, comparison: dict, once: dict, s3: dict) -> dict:
    """The headline figures and the issue's goals, from the medians."""
    median = comparison["median"]
    sizes = sorted(int(size) for size in median[PROJECT])
    small = str(sizes[0])
    figures: dict = {"a_ceiling_images_per_s": ceiling["images_per_s"], "sizes": sizes}
    for job in (PROJECT, BASELINE):
        walls = {int(size): figures["wall_s"] for size, figures in median[job].items()}
        rate, fixed = rate_and_fixed_cost(walls)
        figures[job] = {
            "wall_s": {str(size): walls[size] for size in sizes},
            "marginal_images_per_s": rate,
            "fixed_cost_s": fixed,
            "peak_memory_gb": max(m["peak_memory_gb"] for m in median[job].values()),
        }
    figures["project_phases_s"] = median[PROJECT][small]["seconds"]
    figures["c_rerun_wall_s"] = once["rerun"]["wall_s"]
    figures["d_pca_wall_s"] = once["pca"]["wall_s"]
    s3_fast, s3_slow = s3["median"]["0"], s3["median"][str(S3_LATENCY_MS)]
    figures["e_s3_0ms_phase_images_per_s"] = s3_fast["phase_images_per_s"]
    figures[f"e_s3_{S3_LATENCY_MS}ms_phase_images_per_s"] = s3_slow["phase_images_per_s"]
    figures["e_s3_image_requests_per_image"] = s3_fast["image_requests_per_image"]
    figures["e_s3_rerun_image_object_requests"] = s3["runs"][str(S3_LATENCY_MS)][0]["rerun_image_object_requests"]
    project, baseline = figures[PROJECT], figures[BASELINE]
    goals = {
        f"speedup_at_{small}_vs_baseline": _goal(baseline["wall_s"][small] / project["wall_s"][small], at_least=2.5),
        "marginal_rate_vs_ceiling": _goal(project["marginal_images_per_s"] / ceiling["images_per_s"], at_least=0.85),
        "fixed_cost_s": _goal(project["fixed_cost_s"], below=15.0001),
        f"peak_memory_gb_at_{small}": _goal(median[PROJECT][small]["peak_memory_gb"], below=3.0),
        f"e_s3_{S3_LATENCY_MS}ms_vs_0ms": _goal(
            s3_slow["phase_images_per_s"] / s3_fast["phase_images_per_s"], at_least=0.80
        ),
        "e_s3_image_requests_per_image": _goal(figures["e_s3_image_requests_per_image"], below=1.2001),
        "e_s3_rerun_image_object_requests": _goal(figures["e_s3_rerun_image_object_requests"], below=0.5),
    }
    return {"figures": figures, "goals": goals}


def _goal(value: float, *, at_least: float | None = None, below: float | None = None) -> dict:
    if at_least is not None:
        return {"value": value, "goal": f">= {at_least}", "met": value >= at_least}
    assert below is not None, "a goal is at_least or below a bound"
    return {"value": value, "goal": f"<= {below:g}", "met": value < below}


def machine() -> dict:
    import ai_edge_litert
    import pyspark

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GB, 1),
        "python": platform.python_version(),
        "pyspark": pyspark.__version__,
        "ai_edge_litert": getattr(ai_edge_litert, "__version__", "?"),
        "load_average_at_start": os.getloadavg(),
    }


def table(result: dict) -> str:
    """The figures and goals as an aligned plain-text table."""
    figures, goals, ceiling = result["summary"]["figures"], result["summary"]["goals"], result["ceiling"]
    rows = [
        ("(a) ceiling: " + ceiling["runtime"], f"{figures['a_ceiling_images_per_s']:.0f} images/s"),
        ("    LiteRT, 1 thread, batch 1", f"{ceiling['litert_one_thread_batch_1_images_per_s']:.0f} images/s"),
        ("    Keras predict, same process", f"{ceiling['keras_predict_images_per_s']:.0f} images/s"),
    ]
    for job, title in (
        (PROJECT, "(b) extract_features, model cached"),
        (BASELINE, "    baseline (Keras in a pandas UDF)"),
    ):
        job_figures = figures[job]
        rows.append((title, ""))
        rows += [(f"      end to end, {size} images", f"{wall:.1f} s") for size, wall in job_figures["wall_s"].items()]
        rows += [
            ("      marginal rate", f"{job_figures['marginal_images_per_s']:.0f} images/s"),
            ("      fixed cost", f"{job_figures['fixed_cost_s']:.1f} s"),
            ("      peak memory (summed RSS of the tree)", f"{job_figures['peak_memory_gb']:.2f} GB"),
        ]
    rows.append((f"    extract_features phases at {figures['sizes'][0]} images", ""))
    rows += [(f"      {phase}", f"{seconds:.1f} s") for phase, seconds in figures["project_phases_s"].items()]
    rows += [
        ("(c) incremental rerun, nothing new", f"{figures['c_rerun_wall_s']:.1f} s"),
        ("(d) pca", f"{figures['d_pca_wall_s']:.1f} s"),
        ("(e) S3 API, featurization phase, 0 ms", f"{figures['e_s3_0ms_phase_images_per_s']:.0f} images/s"),
        (
            f"    at {S3_LATENCY_MS} ms per request",
            f"{figures[f'e_s3_{S3_LATENCY_MS}ms_phase_images_per_s']:.0f} images/s",
        ),
        ("    image requests per new image", f"{figures['e_s3_image_requests_per_image']:.3f}"),
        ("    image-object requests of a rerun", f"{figures['e_s3_rerun_image_object_requests']}"),
    ]
    for name, goal in goals.items():
        verdict = "  met" if goal["met"] else "  NOT met"
        rows.append((f"goal {name} {goal['goal']}", f"{goal['value']:.2f}{verdict}"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}".rstrip() for name, value in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=SIZES, help="the two image counts (default 2048 8192)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each job and size; medians reported (2)")
    parser.add_argument("--out", type=Path, default=ROOT / ".bench", help="work folder (default .bench/)")
    args = parser.parse_args()
    small, large = sorted(args.sizes)
    if small < 1 or large <= small or args.repeats < 1:
        parser.error("--sizes must be two different positive counts and --repeats at least 1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args.out.mkdir(parents=True, exist_ok=True)
    images = {}
    for n_images in (small, large):
        images[n_images] = args.out / f"images-{n_images}"
        shutil.rmtree(images[n_images], ignore_errors=True)
        generate(images[n_images], n_images)
    shutil.rmtree(args.out / "models", ignore_errors=True)
    result = {"command": "make bench", "sizes": [small, large], "repeats": args.repeats, "machine": machine()}
    results_file = args.out / "results.json"
    sections = (
        ("ceiling", lambda: measure_ceiling(args.repeats)),
        ("comparison", lambda: measure_comparison(images, args.out, args.repeats)),
        ("once", lambda: measure_rerun_and_pca(images[small], args.out)),
        ("s3", lambda: measure_s3(images[small], args.out, 1)),
    )
    for name, measure in sections:
        result[name] = measure()
        # Each section's figures are kept as soon as they exist: a later section's failure loses none.
        results_file.write_text(json.dumps(result, indent=2) + "\n")
        print(f"section {name} measured; figures so far in {results_file}", file=sys.stderr)
    result["summary"] = summarize(result["ceiling"], result["comparison"], result["once"], result["s3"])
    document = json.dumps(result, indent=2)
    results_file.write_text(document + "\n")
    print(table(result))
    print(document)


if __name__ == "__main__":
    main()
