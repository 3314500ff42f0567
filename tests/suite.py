"""What the whole suite shares: the repository's folders, the kinds of test, and which process this is."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DAGS_DIR = REPO_ROOT / "dags"
PLUGINS_DIR = REPO_ROOT / "plugins"
SPARK_JOBS_DIR = REPO_ROOT / "spark_jobs"

# The markers that sort tests (registered in pyproject.toml); each test has exactly one.
KINDS = ("unit", "spark", "e2e")

# True in a pytest-xdist worker (-n), false in the main process, which alone owns session-wide files.
IS_XDIST_WORKER = "PYTEST_XDIST_WORKER" in os.environ
