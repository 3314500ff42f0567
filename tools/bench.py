"""Measure feature extraction on this machine, from the raw inference ceiling to the Spark jobs.

    python -m tools.bench [--images 2048] [--repeats 3] [--out .bench]     (or: make bench)

(a) ceiling: the fastest MobileNetV2 (224x224, ``--weights none``) inference in this one process on
    all cores, no Spark and no decoding: LiteRT at a few batch sizes, Keras ``predict`` for reference.
(b) extract: ``spark-submit spark_jobs/extract_features.py`` on freshly generated images, end to end
    (JVM start and model compile included); the featurization phase alone, from the job's log; the
    peak memory of the whole process tree (JVM, driver Python, PySpark daemon and workers).
(c) rerun: the same command again, which must featurize nothing.
(d) pca: ``spark-submit spark_jobs/pca.py`` on the features of (b).
(e) S3: (b) again, the images in the embedded endpoint's S3 (local_aws) read through its API (S3A on
    the driver, one GET per image on the executors), with no added latency and with S3's ~30 ms per
    request, alternated; the featurization phase's images/s of each, their ratio, the image requests
    per new image of a first run, and the image-object requests of a rerun (from the request log).

Other processes on the machine slow any run down, so each job runs ``--repeats`` times and the table
shows medians; the JSON (also written to OUT/results.json) keeps every run. The goals of issue 6 are
checked beside the figures. Benchmarks measure; no test asserts on their timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
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
SPARK_SUBMIT = Path(sys.executable).parent / "spark-submit"
IMAGE_SIZE = 224
CEILING_BATCHES = (1, 4, 16, 32)
CEILING_IMAGES = 256
KERAS_BATCH = 32
GB = 1e9
_FEATURIZE_LINE = re.compile(r"featurize (\d+) images: finished in ([\d.]+) s")
_SUMMARY_LINE = re.compile(r"featurized (\d+), rejected (\d+)")


@dataclass(frozen=True)
class JobRun:
    """One spark-submit: wall time, CPU time of its process tree, its peak summed RSS, the CPU time
    that other processes took meanwhile (what makes the run noisy), and its log."""

    wall_s: float
    cpu_s: float
    peak_memory_gb: float
    other_cpu_s: float
    log: str


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


def spark_submit(script: str, args: list[str], log_path: Path, aws: dict[str, str] | None = None) -> JobRun:
    """Run one job as users do (the venv's spark-submit, local[*]) and measure the whole process tree.

    :param aws: the AWS variables that point the job at an endpoint.
    """
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"} | (aws or {})
    command = [str(SPARK_SUBMIT), str(SPARK_JOBS / script), *args]
    busy_before, started = _machine_busy_s(), time.monotonic()
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        with ProcessTreeSampler(process.pid) as tree:
            returncode = process.wait()
    wall, busy = time.monotonic() - started, _machine_busy_s() - busy_before
    text = log_path.read_text()
    if returncode != 0:
        raise RuntimeError(f"{script} failed with exit code {returncode}; see {log_path}:\n{text[-2000:]}")
    return JobRun(wall, tree.cpu_s, tree.peak_rss_bytes / GB, max(0.0, busy - tree.cpu_s), text)


def _machine_busy_s() -> float:
    """CPU seconds every process on the machine has used since boot (/proc/stat, idle time excluded)."""
    user, nice, system, _idle, _iowait, irq, softirq = map(int, Path("/proc/stat").read_text().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def featurize_phase(log: str) -> tuple[int, float]:
    """``(images, seconds)`` of the featurization phase, from the job's progress line."""
    match = _FEATURIZE_LINE.search(log)
    if match is None:
        raise ValueError("no 'featurize N images: finished in X s' line in the extract_features log")
    return int(match[1]), float(match[2])


def n_featurized(log: str) -> int:
    """How many images a run featurized: 0 when its log has no summary line (nothing new)."""
    match = _SUMMARY_LINE.search(log)
    return int(match[1]) if match else 0


def measure_jobs(images: Path, work: Path, repeats: int) -> dict:
    """(b), (c) and (d), ``repeats`` times each, every (b) on a fresh features dataset."""
    runs = []
    for repeat in range(repeats):
        features, pca = work / "features", work / "pca"
        for stale in (features, Path(f"{features}_rejects"), pca, work / "report"):
            shutil.rmtree(stale, ignore_errors=True)
        common = ["--images", str(images), "--features", str(features), "--weights", "none"]
        extract = spark_submit("extract_features.py", common, work / f"extract-{repeat}.log")
        rerun = spark_submit("extract_features.py", common, work / f"rerun-{repeat}.log")
        pca_run = spark_submit(
            "pca.py", ["--features", str(features), "--output", str(pca)], work / f"pca-{repeat}.log"
        )
        if n_featurized(rerun.log) != 0:
            raise RuntimeError(f"the rerun featurized images again; see {work}/rerun-{repeat}.log")
        phase_images, phase_s = featurize_phase(extract.log)
        runs.append(
            {
                "extract": _run_figures(extract) | {"images": n_featurized(extract.log)},
                "featurize_phase": {"images": phase_images, "wall_s": phase_s},
                "rerun": _run_figures(rerun),
                "pca": _run_figures(pca_run),
            }
        )
        print(f"run {repeat + 1}/{repeats}: {json.dumps(runs[-1])}", file=sys.stderr)
    return {"runs": runs, "median": _medians(runs)}


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
        aws = {
            "AWS_ENDPOINT_URL": endpoint.endpoint_url,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_REGION": endpoint.region,
        }
        for repeat in range(repeats):
            for latency_ms in (0, S3_LATENCY_MS):
                features = f"s3://{S3_BUCKET}/features/run-{repeat}-{latency_ms}ms"
                common = ["--images", f"s3://{S3_BUCKET}/images/", "--features", features, "--weights", "none"]
                endpoint.latency_seconds = latency_ms / 1000
                endpoint.requests.clear()
                run = spark_submit("extract_features.py", common, work / f"s3-{repeat}-{latency_ms}ms.log", aws)
                image_requests = requests_under(endpoint.requests, S3_BUCKET, "images")
                phase_images, phase_s = featurize_phase(run.log)
                figures = _run_figures(run) | {
                    "phase_images_per_s": phase_images / phase_s,
                    "image_requests_per_image": len(image_requests) / len(files),
                }
                if repeat == 0 and latency_ms == S3_LATENCY_MS:
                    endpoint.requests.clear()
                    spark_submit("extract_features.py", common, work / "s3-rerun.log", aws)
                    figures["rerun_image_object_requests"] = sum(
                        1 for r in requests_under(endpoint.requests, S3_BUCKET, "images") if r.path.endswith(".jpg")
                    )
                runs[str(latency_ms)].append(figures)
                print(f"s3 run {repeat + 1}/{repeats} at {latency_ms} ms: {json.dumps(figures)}", file=sys.stderr)
    median = {
        latency: {key: statistics.median(run[key] for run in rs) for key in rs[0]} for latency, rs in runs.items()
    }
    return {"runs": runs, "median": median}


def _run_figures(run: JobRun) -> dict:
    return {key: round(value, 3) for key, value in asdict(run).items() if key != "log"}


def _medians(runs: list[dict]) -> dict:
    return {step: {key: statistics.median(run[step][key] for run in runs) for key in runs[0][step]} for step in runs[0]}


def summarize(ceiling: dict, jobs: dict, s3: dict) -> dict:
    """The headline figures and the issue's goals, from the medians."""
    median = jobs["median"]
    s3_fast, s3_slow = s3["median"]["0"], s3["median"][str(S3_LATENCY_MS)]
    extract_rate = median["extract"]["images"] / median["extract"]["wall_s"]
    phase_rate = median["featurize_phase"]["images"] / median["featurize_phase"]["wall_s"]
    figures = {
        "a_ceiling_images_per_s": ceiling["images_per_s"],
        "b_extract_images_per_s": extract_rate,
        "b_extract_wall_s": median["extract"]["wall_s"],
        "b_featurize_phase_images_per_s": phase_rate,
        "b_peak_memory_gb": median["extract"]["peak_memory_gb"],
        "c_rerun_wall_s": median["rerun"]["wall_s"],
        "d_pca_wall_s": median["pca"]["wall_s"],
        "e_s3_0ms_phase_images_per_s": s3_fast["phase_images_per_s"],
        f"e_s3_{S3_LATENCY_MS}ms_phase_images_per_s": s3_slow["phase_images_per_s"],
        "e_s3_image_requests_per_image": s3_fast["image_requests_per_image"],
        "e_s3_rerun_image_object_requests": s3["runs"][str(S3_LATENCY_MS)][0]["rerun_image_object_requests"],
    }
    goals = {
        "b_vs_a": _goal(extract_rate / ceiling["images_per_s"], at_least=0.60),
        "b_featurize_phase_vs_a": {"value": phase_rate / ceiling["images_per_s"], "goal": "(for reference)"},
        "b_peak_memory_gb": _goal(figures["b_peak_memory_gb"], below=4.0),
        "c_vs_b_wall": _goal(figures["c_rerun_wall_s"] / figures["b_extract_wall_s"], below=0.25),
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
    return {"value": value, "goal": f"< {below}", "met": value < below}


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
        ("(b) extract_features end to end", f"{figures['b_extract_images_per_s']:.0f} images/s"),
        ("    wall time", f"{figures['b_extract_wall_s']:.1f} s"),
        ("    featurization phase alone", f"{figures['b_featurize_phase_images_per_s']:.0f} images/s"),
        ("    peak memory (summed RSS of the tree)", f"{figures['b_peak_memory_gb']:.2f} GB"),
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
        verdict = "" if "met" not in goal else ("  met" if goal["met"] else "  NOT met")
        rows.append((f"goal {name} {goal['goal']}", f"{goal['value']:.2f}{verdict}"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048, help="generated images for (b)-(d) (default 2048)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each job; medians are reported (default 3)")
    parser.add_argument("--out", type=Path, default=ROOT / ".bench", help="work folder (default .bench/)")
    args = parser.parse_args()
    if args.images < 1 or args.repeats < 1:
        parser.error("--images and --repeats must be at least 1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    images = args.out / "images"
    shutil.rmtree(images, ignore_errors=True)
    generate(images, args.images)
    result = {"command": "make bench", "images": args.images, "repeats": args.repeats, "machine": machine()}
    result["ceiling"] = measure_ceiling(args.repeats)
    result["jobs"] = measure_jobs(images, args.out, args.repeats)
    result["s3"] = measure_s3(images, args.out, args.repeats)
    result["summary"] = summarize(result["ceiling"], result["jobs"], result["s3"])
    document = json.dumps(result, indent=2)
    (args.out / "results.json").write_text(document + "\n")
    print(table(result))
    print(document)


if __name__ == "__main__":
    main()
