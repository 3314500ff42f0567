"""Consecutive transient errors: the first N attempts of a request fail, so that a client's retry setting is tested.

The faults of :class:`local_aws.faults.FaultPlan` with a share fail a request's first attempt only: any
retrying client survives them, whatever its retry setting. :class:`FailedAttempts` fails the first
``attempts`` attempts of each request matching ``at`` (an S3 request with ``503 SlowDown`` or ``500
InternalError``, an EMR request with ``ThrottlingException``), so that a client survives only if it makes
more attempts than that: botocore's default makes 5 in its legacy mode (3 in standard mode), S3A's
AWS SDK its ``fs.s3a.attempts.maximum``. ``share`` of the matching requests are failed so, drawn from
the plan's seed; the others are answered at once.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass

_REMEMBERED_REQUESTS = 100_000


@dataclass(frozen=True)
class FailedAttempts:
    """The first ``attempts`` attempts of each request matching ``at`` are answered with a transient error.

    :param at: the requests: an EMR operation (``DescribeCluster``) or a method and path prefix
        (``GET /bucket/images/``).
    :param attempts: how many consecutive attempts of each such request fail (from 1).
    :param share: the share of the matching requests that fail so, drawn from the plan's seed (default all).
    """

    at: str = ""
    attempts: int = 1
    share: float = 1.0

    def problem(self) -> str | None:
        """What makes this fault impossible to carry out, in a sentence naming the fix; None when it can be."""
        if not self.at:
            return "Fault plan key 'failed_attempts' has no 'at'; name an EMR operation or 'METHOD /path'."
        if self.attempts < 1:
            return f"Fault plan key 'failed_attempts' has attempts {self.attempts}; use 1 or more."
        if not 0.0 <= self.share <= 1.0:
            return f"Fault plan key 'failed_attempts' has share {self.share}; use a share between 0 and 1."
        return None


class AttemptCounter:
    """Counts the attempts of each request (its SDK invocation id, the same on every retry); not thread-safe:
    the injector calls it under its lock."""

    def __init__(self) -> None:
        self._failed: OrderedDict[str, int] = OrderedDict()

    def fails(self, fault: FailedAttempts, request: str, draw: random.Random) -> bool:
        """Whether this attempt of ``request`` is one of the first ``fault.attempts`` of a request drawn to fail."""
        if request not in self._failed:
            self._failed[request] = 0 if draw.random() < fault.share else fault.attempts
            if len(self._failed) > _REMEMBERED_REQUESTS:
                self._failed.popitem(last=False)
        if self._failed[request] >= fault.attempts:
            return False
        self._failed[request] += 1
        return True
