"""Progress of long Spark work in the job's log, for whoever watches a step at 3 a.m."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pyspark import SparkContext

log = logging.getLogger(__name__)


def _task_counts(sc: SparkContext) -> tuple[int, int]:
    tracker = sc.statusTracker()
    done = total = 0
    for stage_id in tracker.getActiveStageIds():
        stage = tracker.getStageInfo(stage_id)
        if stage is not None:
            done += stage.numCompletedTasks
            total += stage.numTasks
    return done, total


@contextmanager
def logged_progress(sc: SparkContext, what: str, every_seconds: float = 30.0) -> Iterator[None]:
    """Log the running stages' completed/total tasks every ``every_seconds`` while the body runs."""
    stop = threading.Event()
    started = time.monotonic()

    def report() -> None:
        while not stop.wait(every_seconds):
            done, total = _task_counts(sc)
            if total:
                log.info("%s: %d/%d tasks done, %.0f s", what, done, total, time.monotonic() - started)

    reporter = threading.Thread(target=report, name=f"progress-{what}", daemon=True)
    reporter.start()
    try:
        yield
    finally:
        stop.set()
        reporter.join()
        log.info("%s: finished in %.1f s", what, time.monotonic() - started)
