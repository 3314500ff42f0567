"""A job's summary for machines: its counts and where its time went, as one JSON file.

``make bench`` and other tools read this file (``--summary-json PATH``) instead of parsing log lines.
It is written once the session has stopped, so it also times the shutdown; a failed run writes none.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class PhaseTimes:
    """Wall seconds of a job's named phases, in the order they ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.monotonic() - started, 3)


def write_summary(path: str, summary: dict[str, Any]) -> None:
    """Write ``summary`` to the local file ``path`` whole (a temporary file renamed into place)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    with os.fdopen(handle, "w") as file:
        json.dump(summary, file, indent=2)
        file.write("\n")
    os.replace(temporary, target)
    log.info("summary: %s", target)
