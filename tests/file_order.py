"""The longest test files first, so that pytest-xdist's workers end together.

With ``--dist loadfile`` an idle worker gets the next whole file in collection order (the Makefile
turns off xdist's own reordering, by number of tests, which sent the long files last: they have few
tests each). The whole suite runs in one xdist run, the end-to-end files included, so the order decides
how long it takes: the demo's file alone is about 13 minutes on one worker, and must start first.

Each file's seconds (setup, call and teardown of its tests) in the last run that ran it are kept in
pytest's cache (``.pytest_cache``). A file never timed there, as on a fresh clone, is guessed from its
tests' kinds (tests/conftest.py sets them): end-to-end files longest, then the files that start Spark
or bootstrap the session's node, then the others, in collection order.
"""

from __future__ import annotations

import pytest

from tests.suite import IS_XDIST_WORKER

FILE_SECONDS_KEY = "fruits/file-seconds"
E2E_GUESS_SECONDS = 600.0
LONG_GUESS_SECONDS = 60.0
_seconds_this_run: dict[str, float] = {}


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def guessed_seconds(item: pytest.Item) -> float:
    if item.get_closest_marker("e2e"):
        return E2E_GUESS_SECONDS
    if item.get_closest_marker("spark") or "project_node_dir" in getattr(item, "fixturenames", ()):
        return LONG_GUESS_SECONDS
    return 0.0


def expected_seconds(config: pytest.Config, items: list[pytest.Item]) -> dict[str, float]:
    """Each file's seconds in its last timed run, else the guess of its longest kind of test."""
    expected: dict[str, float] = {}
    for item in items:
        expected[file_of(item.nodeid)] = max(guessed_seconds(item), expected.get(file_of(item.nodeid), 0.0))
    cache = getattr(config, "cache", None)  # None under -p no:cacheprovider
    timed = cache.get(FILE_SECONDS_KEY, {}) if cache else {}
    return {file: timed.get(file, guess) for file, guess in expected.items()}


@pytest.hookimpl(trylast=True)  # after tests/conftest.py has marked each test's kind
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    expected = expected_seconds(config, items)
    # A stable sort: each file's tests keep their order, and files expected equally long theirs.
    items.sort(key=lambda item: expected[file_of(item.nodeid)], reverse=True)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Add up each file's seconds in the main process, where xdist's workers send their reports."""
    if not IS_XDIST_WORKER:
        file = file_of(report.nodeid)
        _seconds_this_run[file] = _seconds_this_run.get(file, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    cache = getattr(session.config, "cache", None)
    if IS_XDIST_WORKER or cache is None or not _seconds_this_run:
        return
    timed = cache.get(FILE_SECONDS_KEY, {})
    cache.set(FILE_SECONDS_KEY, {**timed, **{file: round(s, 1) for file, s in _seconds_this_run.items()}})
