"""Measure feature extraction on this machine: the project's job against the usual approach, and its parts.

    python -m tools.bench [--sizes 2048 8192] [--repeats 2] [--out .bench] [--reduced] [--before DIR]
    make bench BENCH_ARGS="--reduced --before /tmp/main/spark_jobs"

(a) ceiling: the fastest MobileNetV2 (224x224, ``--weights none``) inference in this one process on
    all cores, no Spark and no decoding: LiteRT at a few batch sizes, Keras ``predict`` for reference.
(b) extract vs baseline: ``spark-submit spark_jobs/extract_features.py`` (its model cached) and
    ``tools/baseline_extract.py`` (a pandas UDF rebuilding Keras's MobileNetV2 from broadcast weights,
    ``model.predict`` per Arrow batch), alternated, on the same generated images at each size; end to
    end wall time, peak memory of the process tree, the marginal rate between the two sizes and the
    fixed cost (end to end minus images over the marginal rate), also as a multiple of an empty Spark
    job (tools/empty_spark_job.py: a session, one Python task, stop) measured in the same run; the
    project job's phases, from its ``--summary-json``. ``--before DIR`` runs the job of another
    ``spark_jobs`` tree (say main's: ``git archive main spark_jobs | tar -x -C /tmp/main``) alternated
    with this one's, so a change is judged side by side in one run, under one load.
(c) rerun: the project's job again on its 2,048-image features, which must featurize nothing.
(d) pca: ``spark-submit spark_jobs/pca.py`` on those features.
(e) S3: the project's job with the images in the embedded endpoint's S3 (local_aws) read through its
    API (S3A on the driver, one GET per image on the executors), with no added latency and with S3's
    ~30 ms per request; the featurization phase's images/s of each, their ratio, the image requests
    per new image of a first run, and the image-object requests of a rerun (from the request log).

``--reduced`` measures (a) and (b) without the baseline, at 1,024 and 4,096 images: minutes, not half
an hour. Other processes on the machine slow any run down, so each job runs ``--repeats`` times and
the table shows medians; the JSON (also written to OUT/results.json) keeps every run. The goals of
issues 14 and 31 are checked beside the figures. Benchmarks measure; no test asserts on their timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from local_aws.request_log import requests_under
from tools.bench_jobs import (
    GB,
    IMAGE_SIZE,
    SPARK_JOBS,
    JobRun,
    baseline_job,
    empty_job,
    project_job,
    run_figures,
    spark_submit,
)
from tools.bench_report import BASELINE, BEFORE, EMPTY_JOB, PROJECT, S3_LATENCY_MS, summarize, table
from tools.sample_images import generate

ROOT = Path(__file__).resolve().parents[1]
SIZES = (2048, 8192)
# --reduced: the project's job (and --before's) and the empty job alone, at smaller sizes: minutes, not half an hour.
REDUCED_SIZES = (1024, 4096)
CEILING_BATCHES = (1, 4, 16, 32)
CEILING_IMAGES = 256
KERAS_BATCH = 32


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


def measure_comparison(
    images: dict[int, Path], work: Path, repeats: int, before: Path | None = None, baseline: bool = True
) -> dict:
    """(b): the empty job once per repeat, then each job alternated at each size, ``repeats`` times each.

    :param before: another ``spark_jobs`` tree whose extract_features runs beside this one's.
    :param baseline: whether the baseline runs too (not in ``--reduced``).
    """
    jobs = (PROJECT, *((BEFORE,) if before else ()), *((BASELINE,) if baseline else ()))
    trees = {PROJECT: SPARK_JOBS, BEFORE: before}
    for job in (PROJECT, BEFORE):
        if job in jobs:
            warm = _extract(trees, job, images[min(images)], work / f"warm-features-{job}", f"warm-cache-{job}")
            if warm.summary["model_source"] not in ("cache", "compiled"):
                raise RuntimeError(f"the warm-up run of {job} used no model cache: {warm.summary}")
    runs: dict[str, dict[str, list[dict]]] = {job: {str(n): [] for n in images} for job in jobs}
    empty_runs = []
    for repeat in range(repeats):
        empty_runs.append(run_figures(empty_job(work, f"{EMPTY_JOB}-{repeat}")))
        print(f"{EMPTY_JOB}-{repeat}: {json.dumps(empty_runs[-1])}", file=sys.stderr)
        for n_images, folder in images.items():
            for job in jobs:
                features = work / f"{job}-features-{n_images}"
                name = f"{job}-{n_images}-{repeat}"
                run = _extract(trees, job, folder, features, name)
                if job != BASELINE and run.summary["model_source"] != "cache":
                    raise RuntimeError(f"{name} compiled its model; the bench measures cached runs")
                if run.summary["n_featurized"] != n_images:
                    raise RuntimeError(f"{name} featurized {run.summary['n_featurized']} of {n_images} images")
                figures = run_figures(run)
                runs[job][str(n_images)].append(figures)
                print(f"{name}: {json.dumps(figures)}", file=sys.stderr)
    median: dict = {job: _median_by_size(by_size) for job, by_size in runs.items()}
    median[EMPTY_JOB] = {"wall_s": statistics.median(run["wall_s"] for run in empty_runs)}
    return {"runs": runs | {EMPTY_JOB: empty_runs}, "median": median}


def _extract(trees: dict[str, Path | None], job: str, images: Path, features: Path, name: str) -> JobRun:
    """One run of ``job`` on a fresh features dataset; its logs and summary go beside the features."""
    work = features.parent
    for stale in (features, Path(f"{features}_rejects")):
        shutil.rmtree(stale, ignore_errors=True)
    tree = trees.get(job)
    if tree is None:
        return baseline_job(images, features, work, name)
    return project_job(str(images), str(features), work, name, spark_jobs=tree)


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, help="the two image counts (2048 8192; reduced 1024 4096)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each job and size; medians reported (2)")
    parser.add_argument("--out", type=Path, default=ROOT / ".bench", help="work folder (default .bench/)")
    parser.add_argument(
        "--reduced", action="store_true", help="(a), (b) without the baseline, smaller sizes; no (c), (d), (e)"
    )
    parser.add_argument(
        "--before", type=Path, help="another spark_jobs tree (e.g. main's) whose job runs side by side with this one's"
    )
    args = parser.parse_args(argv)
    args.sizes = sorted(args.sizes or (REDUCED_SIZES if args.reduced else SIZES))
    if args.sizes[0] < 1 or args.sizes[1] <= args.sizes[0] or args.repeats < 1:
        parser.error("--sizes must be two different positive counts and --repeats at least 1")
    if args.before is not None:
        args.before = args.before.resolve()
        if not (args.before / "extract_features.py").is_file():
            parser.error(f"--before {args.before} holds no extract_features.py; pass a spark_jobs folder")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    small, large = args.sizes
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args.out.mkdir(parents=True, exist_ok=True)
    images = {}
    for n_images in (small, large):
        images[n_images] = args.out / f"images-{n_images}"
        shutil.rmtree(images[n_images], ignore_errors=True)
        generate(images[n_images], n_images)
    shutil.rmtree(args.out / "models", ignore_errors=True)
    command = " ".join(["python -m tools.bench", *(argv if argv is not None else sys.argv[1:])])
    result = {"command": command, "sizes": [small, large], "repeats": args.repeats, "machine": machine()}
    if args.before:
        result["before"] = str(args.before)
    results_file = args.out / "results.json"
    sections = [
        ("ceiling", lambda: measure_ceiling(args.repeats)),
        ("comparison", lambda: measure_comparison(images, args.out, args.repeats, args.before, not args.reduced)),
    ]
    if not args.reduced:
        sections += [
            ("once", lambda: measure_rerun_and_pca(images[small], args.out)),
            ("s3", lambda: measure_s3(images[small], args.out, 1)),
        ]
    for name, measure in sections:
        result[name] = measure()
        # Each section's figures are kept as soon as they exist: a later section's failure loses none.
        results_file.write_text(json.dumps(result, indent=2) + "\n")
        print(f"section {name} measured; figures so far in {results_file}", file=sys.stderr)
    result["machine"]["load_average_at_end"] = os.getloadavg()
    result["summary"] = summarize(result["ceiling"], result["comparison"], result.get("once"), result.get("s3"))
    document = json.dumps(result, indent=2)
    results_file.write_text(document + "\n")
    print(table(result))
    print(document)


if __name__ == "__main__":
    main()
