"""What the whole suite shares: the repository's folders, and the kinds of test."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DAGS_DIR = REPO_ROOT / "dags"
PLUGINS_DIR = REPO_ROOT / "plugins"
SPARK_JOBS_DIR = REPO_ROOT / "spark_jobs"

# The markers that sort tests (registered in pyproject.toml); each test has exactly one.
KINDS = ("unit", "spark", "e2e")
