"""What `make bench` makes of its measurements: the marginal rates, the fixed costs, the goals, the table.

Pure functions of the measured figures (tests feed them made-up ones). The fixed cost is judged as a
multiple of the empty Spark job measured in the same run (tools/empty_spark_job.py), since seconds
alone swing with the machine's load and the cores' speed of the day; so is every ratio the goals use.
"""

from __future__ import annotations

PROJECT, BEFORE, BASELINE, EMPTY_JOB = "project", "before", "baseline", "empty_job"
S3_LATENCY_MS = 30
TITLES = {
    PROJECT: "(b) extract_features, model cached",
    BEFORE: "    extract_features of --before, model cached",
    BASELINE: "    baseline (Keras in a pandas UDF)",
}


def rate_and_fixed_cost(wall_by_size: dict[int, float]) -> tuple[float, float]:
    """The marginal rate between the smallest and largest sizes, and the fixed cost at the smallest."""
    small, large = min(wall_by_size), max(wall_by_size)
    rate = (large - small) / (wall_by_size[large] - wall_by_size[small])
    return rate, wall_by_size[small] - small / rate


def job_figures(median_by_size: dict[str, dict], ceiling: float, empty_wall_s: float) -> dict:
    """One job's end-to-end and CPU times, marginal rate (also as a share of the ceiling), fixed cost
    (also as a multiple of the empty job) and peak memory, from its medians at each size.

    The process tree's CPU time moves less with other processes' load than its wall time does.
    """
    walls = {int(size): figures["wall_s"] for size, figures in median_by_size.items()}
    rate, fixed = rate_and_fixed_cost(walls)
    return {
        "wall_s": {str(size): walls[size] for size in sorted(walls)},
        "cpu_s": {str(size): median_by_size[str(size)]["cpu_s"] for size in sorted(walls)},
        "marginal_images_per_s": rate,
        "marginal_vs_ceiling": rate / ceiling,
        "fixed_cost_s": fixed,
        "fixed_cost_vs_empty_job": fixed / empty_wall_s,
        "peak_memory_gb": max(m["peak_memory_gb"] for m in median_by_size.values()),
    }


def summarize(ceiling: dict, comparison: dict, once: dict | None = None, s3: dict | None = None) -> dict:
    """The headline figures and the goals, from the medians; ``once`` and ``s3`` are absent in ``--reduced``."""
    median = comparison["median"]
    sizes = sorted(int(size) for size in median[PROJECT])
    small = str(sizes[0])
    empty_wall_s = median[EMPTY_JOB]["wall_s"]
    figures: dict = {"a_ceiling_images_per_s": ceiling["images_per_s"], "sizes": sizes, "empty_job_s": empty_wall_s}
    for job in (PROJECT, BEFORE, BASELINE):
        if job in median:
            figures[job] = job_figures(median[job], ceiling["images_per_s"], empty_wall_s)
    figures["project_phases_s"] = median[PROJECT][small]["seconds"]
    project = figures[PROJECT]
    goals = {
        "marginal_rate_vs_ceiling": _goal(project["marginal_vs_ceiling"], at_least=0.85),
        "fixed_cost_vs_empty_job": _goal(project["fixed_cost_vs_empty_job"], below=1.5001),
        "peak_memory_gb": _goal(project["peak_memory_gb"], below=3.0),
    }
    if BASELINE in figures:
        speedup = figures[BASELINE]["wall_s"][small] / project["wall_s"][small]
        goals[f"speedup_at_{small}_vs_baseline"] = _goal(speedup, at_least=2.5)
    if once is not None:
        figures["c_rerun_wall_s"] = once["rerun"]["wall_s"]
        figures["d_pca_wall_s"] = once["pca"]["wall_s"]
    if s3 is not None:
        figures |= _s3_figures(s3)
        goals |= {
            f"e_s3_{S3_LATENCY_MS}ms_vs_0ms": _goal(
                figures[f"e_s3_{S3_LATENCY_MS}ms_phase_images_per_s"] / figures["e_s3_0ms_phase_images_per_s"],
                at_least=0.80,
            ),
            "e_s3_image_requests_per_image": _goal(figures["e_s3_image_requests_per_image"], below=1.2001),
            "e_s3_rerun_image_object_requests": _goal(figures["e_s3_rerun_image_object_requests"], below=0.5),
        }
    return {"figures": figures, "goals": goals}


def _s3_figures(s3: dict) -> dict:
    fast, slow = s3["median"]["0"], s3["median"][str(S3_LATENCY_MS)]
    return {
        "e_s3_0ms_phase_images_per_s": fast["phase_images_per_s"],
        f"e_s3_{S3_LATENCY_MS}ms_phase_images_per_s": slow["phase_images_per_s"],
        "e_s3_image_requests_per_image": fast["image_requests_per_image"],
        "e_s3_rerun_image_object_requests": s3["runs"][str(S3_LATENCY_MS)][0]["rerun_image_object_requests"],
    }


def _goal(value: float, *, at_least: float | None = None, below: float | None = None) -> dict:
    if at_least is not None:
        return {"value": value, "goal": f">= {at_least}", "met": value >= at_least}
    assert below is not None, "a goal is at_least or below a bound"
    return {"value": value, "goal": f"<= {below:g}", "met": value < below}


def table(result: dict) -> str:
    """The figures and goals as an aligned plain-text table."""
    figures, goals, ceiling = result["summary"]["figures"], result["summary"]["goals"], result["ceiling"]
    rows = [
        ("(a) ceiling: " + ceiling["runtime"], f"{figures['a_ceiling_images_per_s']:.0f} images/s"),
        ("    LiteRT, 1 thread, batch 1", f"{ceiling['litert_one_thread_batch_1_images_per_s']:.0f} images/s"),
        ("    Keras predict, same process", f"{ceiling['keras_predict_images_per_s']:.0f} images/s"),
        ("    empty Spark job (session, one Python task, stop)", f"{figures['empty_job_s']:.1f} s"),
    ]
    for job in (PROJECT, BEFORE, BASELINE):
        if job in figures:
            rows += _job_rows(TITLES[job], figures[job])
    rows.append((f"    extract_features phases at {figures['sizes'][0]} images", ""))
    rows += [(f"      {phase}", f"{seconds:.1f} s") for phase, seconds in figures["project_phases_s"].items()]
    if "c_rerun_wall_s" in figures:
        rows += [
            ("(c) incremental rerun, nothing new", f"{figures['c_rerun_wall_s']:.1f} s"),
            ("(d) pca", f"{figures['d_pca_wall_s']:.1f} s"),
        ]
    if "e_s3_0ms_phase_images_per_s" in figures:
        rows += [
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


def _job_rows(title: str, job: dict) -> list[tuple[str, str]]:
    rows = [(title, "")]
    rows += [
        (f"      end to end, {size} images", f"{wall:.1f} s, CPU {job['cpu_s'][size]:.1f} s")
        for size, wall in job["wall_s"].items()
    ]
    rate = f"{job['marginal_images_per_s']:.0f} images/s, {job['marginal_vs_ceiling']:.2f} of (a)"
    fixed = f"{job['fixed_cost_s']:.1f} s, {job['fixed_cost_vs_empty_job']:.2f}x the empty job"
    return [
        *rows,
        ("      marginal rate", rate),
        ("      fixed cost", fixed),
        ("      peak memory (summed RSS of the tree)", f"{job['peak_memory_gb']:.2f} GB"),
    ]
