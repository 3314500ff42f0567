"""``python -m local_aws serve``: run the embedded endpoint in the foreground until SIGINT or SIGTERM.

The first line on stdout is the endpoint URL, printed once it accepts requests, so that a script can
start it in the background and read where it listens; logs go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from local_aws.emr_fleets import SPOT_CAPACITY_VARIABLE, parse_spot_capacity
from local_aws.faults import FAULTS_ENV, FaultPlan
from local_aws.server import DEFAULT_HOST, DEFAULT_REGION, EmbeddedAws
from local_aws.spark_submit import REPO_ROOT

DEFAULT_STATE_DIR = REPO_ROOT / ".local-aws"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local_aws", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the endpoint until SIGINT or SIGTERM")
    serve.add_argument("--port", type=int, default=0, help="TCP port; 0 (default) picks a free one")
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    serve.add_argument("--region", default=DEFAULT_REGION, help=f"region of the endpoint (default {DEFAULT_REGION})")
    serve.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help=f"where S3 content, step work folders and logs are kept (default {DEFAULT_STATE_DIR})",
    )
    serve.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="delay every request by this many milliseconds, as S3's 20-40 ms would (default 0)",
    )
    serve.add_argument(
        "--faults",
        default=None,
        help=f"faults to inject, as JSON (local_aws/README.md); default ${FAULTS_ENV}, else none",
    )
    serve.add_argument(
        "--spot-capacity",
        default=None,
        help=f"spot instances left per type for instance fleets, as JSON such as '{{\"m5.xlarge\": 0}}' "
        f"(local_aws/README.md); default ${SPOT_CAPACITY_VARIABLE}, else any amount",
    )
    return parser.parse_args(argv)


def serve(
    port: int,
    host: str,
    region: str,
    state_dir: Path,
    latency_seconds: float = 0.0,
    faults: FaultPlan | None = None,
    spot_capacity: dict[str, int] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, then stop cleanly: steps killed, S3 saved to ``state_dir``."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with EmbeddedAws(
        port=port,
        host=host,
        region=region,
        state_dir=state_dir,
        latency_seconds=latency_seconds,
        faults=faults,
        spot_capacity=spot_capacity,
    ) as aws:
        print(aws.endpoint_url, flush=True)
        stop.wait()
        logging.getLogger("local_aws").info("stopping %s", aws.endpoint_url)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        faults = None if args.faults is None else FaultPlan.from_json(args.faults)
        spot = None if args.spot_capacity is None else parse_spot_capacity(args.spot_capacity, "--spot-capacity")
        serve(args.port, args.host, args.region, args.state_dir, args.latency_ms / 1000, faults, spot)
    except OSError as error:
        print(f"local_aws: {error.strerror or error}", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"local_aws: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
