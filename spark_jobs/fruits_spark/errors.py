"""How a job reports a failure: one clear line and a non-zero exit, and the same line as JSON for machines.

A mistake its user made (:class:`JobInputError`) ends the job with ``prog: error: ...`` and exit 2, never a
traceback. Anything else keeps its traceback for the developer, after a one-line ``prog: failed: ...``.
Either way, with ``--failure URI`` the line goes to that file too (keys ``fruits_contract.JobFailure``),
which the DAG reads to say why a step failed in the job's own words; a job that starts removes the
file an earlier try of the same run may have left there.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fruits_contract import INPUT_ERROR, UNEXPECTED_ERROR, Flag, JobFailure

USAGE_EXIT_CODE = 2
FAILED_EXIT_CODE = 1
# A Py4J error's message holds the whole Java stack trace: its first line is the one that says why.
_MAX_MESSAGE = 1000

log = logging.getLogger(__name__)


class JobInputError(Exception):
    """A problem with the job's input or arguments that the user can fix; the message says how."""


def failure_uri(argv: Sequence[str]) -> str | None:
    """The ``--failure`` argument of a job's command line, if any (the job's own parser declares it too)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(Flag.FAILURE)
    known, _ = parser.parse_known_args(argv)
    return known.failure or None


def write_failure(uri: str, failure: dict[str, Any]) -> None:
    """Write ``failure`` as JSON to a local file or an ``s3://`` URI; a failure to write is logged, never raised.

    boto3, not Hadoop: the job's Spark session may be gone, or be the very thing that failed.
    """
    from fruits_spark.fetch import local_path, new_s3_client, split_s3_uri

    body = json.dumps(failure, indent=2).encode()
    try:
        location = split_s3_uri(uri)
        if location is None:
            path = Path(local_path(uri))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
        else:
            new_s3_client().put_object(Bucket=location[0], Key=location[1], Body=body, ContentType="application/json")
    except Exception as error:  # the job's own failure is what matters: never hide it behind this one
        log.warning("could not write the failure report %s: %s", uri, error)


def clear_failure(uri: str) -> None:
    """Remove an earlier try's failure report, so that one found later is this try's; never raises."""
    from fruits_spark.fetch import local_path, new_s3_client, split_s3_uri

    try:
        location = split_s3_uri(uri)
        if location is None:
            Path(local_path(uri)).unlink(missing_ok=True)
        else:
            new_s3_client().delete_object(Bucket=location[0], Key=location[1])
    except Exception as error:  # the job can run without it; a stale report only misleads
        log.warning("could not remove the earlier failure report %s: %s", uri, error)


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text[:_MAX_MESSAGE]


def run_cli(main: Callable[[Sequence[str]], None], argv: Sequence[str] | None, prog: str) -> None:
    """Run a job's ``main``: a :class:`JobInputError` becomes ``prog: error: ...`` and exit 2 (see the module)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args = sys.argv[1:] if argv is None else argv
    report_to = failure_uri(args)

    def report(message: str, kind: str, exit_code: int) -> None:
        if report_to:
            failure = {JobFailure.JOB: prog, JobFailure.MESSAGE: message, JobFailure.KIND: kind}
            write_failure(report_to, {**failure, JobFailure.EXIT_CODE: exit_code})

    if report_to:
        clear_failure(report_to)
    try:
        main(args)
    except JobInputError as error:
        message = f"{prog}: error: {error}"
        print(message, file=sys.stderr)
        report(message, INPUT_ERROR, USAGE_EXIT_CODE)
        sys.exit(USAGE_EXIT_CODE)
    except Exception as error:
        message = f"{prog}: failed: {_first_line(error)}"
        print(message, file=sys.stderr)
        report(message, UNEXPECTED_ERROR, FAILED_EXIT_CODE)
        raise
