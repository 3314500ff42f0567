"""Stand-ins for the commands of an EMR node that cannot run on this machine, for its bootstrap actions.

    python node_commands.py sudo|dnf|yum|aws ARGS...

The endpoint puts a wrapper of each first on a bootstrap action's PATH (local_aws.node). None of them
hides a failure:

- ``sudo`` runs the command as it is, as the endpoint's user;
- ``dnf`` and ``yum`` ``install`` succeed only when every package asked for is already on this machine
  (a command of that name on PATH; ``pythonX.Y-pip`` when ``pythonX.Y`` has ensurepip), and otherwise
  fail naming the package; any other subcommand fails;
- ``aws s3 cp [--region REGION]`` copies one object to or from the endpoint's S3, through its API (boto3
  reads the endpoint from ``AWS_ENDPOINT_URL``), as a node's AWS CLI copies from S3; any other AWS CLI
  command fails. Given no region (and the node's environment names none), it signs for us-east-1 as AWS
  CLI v1 does, and v2 when the instance metadata does not answer (v2 asks it; no metadata service runs
  here): the endpoint then refuses the request as S3 does (local_aws.s3_regions).

Everything else a bootstrap action calls runs for real, or fails as a missing command does. It runs as a
script, so it imports nothing of the project.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable

_SUDO_SWITCHES = frozenset({"-E", "-H", "-n", "-S", "--preserve-env", "--non-interactive"})
_PIP_PACKAGE = re.compile(r"(?P<python>python3(?:\.\d+)?)-pip")
_AWS_CP_SWITCHES = frozenset({"--only-show-errors", "--quiet", "--no-progress"})
_USAGE_ERROR = 2


def _fail(command: str, message: str, code: int = 1) -> int:
    print(f"{command} (local endpoint stand-in): {message}", file=sys.stderr)
    return code


def sudo(args: list[str]) -> int:
    """Run the command as it is; ``-u`` with anyone but root is refused, as this user cannot become them."""
    index = 0
    while index < len(args) and args[index].startswith("-"):
        if args[index] == "-u" and index + 1 < len(args) and args[index + 1] == "root":
            index += 2
        elif args[index] in _SUDO_SWITCHES:
            index += 1
        else:
            return _fail("sudo", f"option {args[index]} is not supported here; run the command with plain sudo.")
    if index == len(args):
        return _fail("sudo", "no command given", _USAGE_ERROR)
    command = args[index:]
    if shutil.which(command[0]) is None:
        return _fail("sudo", f"{command[0]}: command not found")
    os.execvp(command[0], command)
    return 1  # not reached: exec replaces this process


def _package_present(package: str) -> bool:
    if match := _PIP_PACKAGE.fullmatch(package):
        python = shutil.which(match["python"])
        return (
            python is not None
            and subprocess.run([python, "-m", "ensurepip", "--version"], capture_output=True).returncode == 0
        )
    return shutil.which(package) is not None


def package_manager(name: str) -> Callable[[list[str]], int]:
    """``dnf`` or ``yum``: ``install`` passes only for packages this machine already has."""

    def install(args: list[str]) -> int:
        words = [arg for arg in args if not arg.startswith("-")]
        if not words or words[0] != "install":
            subcommand = words[0] if words else "(none)"
            return _fail(
                name,
                f"`{name} {subcommand}` cannot run on this machine; only `{name} install` of what it has passes.",
            )
        missing = [package for package in words[1:] if not _package_present(package)]
        if missing:
            return _fail(
                name,
                f"{', '.join(missing)}: not on this machine, and nothing is installed here; install it, then rerun.",
            )
        print(f"{name} (local endpoint stand-in): already present: {', '.join(words[1:])}", file=sys.stderr)
        return 0

    return install


def _region_option(args: list[str]) -> tuple[str | None, list[str]]:
    """``--region REGION`` (or ``--region=REGION``) out of ``args``: the region, and the other arguments."""
    region, rest, index = None, [], 0
    while index < len(args):
        if args[index] == "--region" and index + 1 < len(args):
            region, index = args[index + 1], index + 2
            continue
        if args[index].startswith("--region="):
            region = args[index].partition("=")[2]
        else:
            rest.append(args[index])
        index += 1
    return region, rest


def aws(args: list[str]) -> int:
    """``aws s3 cp [--only-show-errors|--quiet|--no-progress] [--region REGION] SRC DST``, one object, either way."""
    if args[:2] != ["s3", "cp"]:
        return _fail(
            "aws",
            f"`aws {' '.join(args[:2])}` cannot run on this machine; only `aws s3 cp` of one object does.",
            _USAGE_ERROR,
        )
    region, options = _region_option(args[2:])
    unsupported = [arg for arg in options if arg.startswith("--") and arg not in _AWS_CP_SWITCHES]
    paths = [arg for arg in options if not arg.startswith("--")]
    if unsupported or len(paths) != 2:
        return _fail(
            "aws", f"`aws s3 cp {' '.join(args[2:])}`: only `aws s3 cp SRC DST` of one object runs here.", _USAGE_ERROR
        )
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    source, destination = paths
    s3 = boto3.client("s3", region_name=region)
    try:
        if source.startswith("s3://") and not destination.startswith("s3://"):
            bucket, _, key = source.removeprefix("s3://").partition("/")
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            if destination == "-":
                sys.stdout.buffer.write(body)
            else:
                with open(destination, "wb") as stream:
                    stream.write(body)
        elif destination.startswith("s3://") and not source.startswith("s3://"):
            bucket, _, key = destination.removeprefix("s3://").partition("/")
            with open(source, "rb") as stream:
                s3.put_object(Bucket=bucket, Key=key, Body=stream.read())
        else:
            return _fail("aws", "`aws s3 cp` copies between S3 and a local file here.", _USAGE_ERROR)
    except (ClientError, BotoCoreError, OSError) as error:
        print(f"fatal error: {error}", file=sys.stderr)
        return 1
    return 0


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "sudo": sudo,
    "dnf": package_manager("dnf"),
    "yum": package_manager("yum"),
    "aws": aws,
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        return _fail("node_commands", f"usage: node_commands.py {{{'|'.join(COMMANDS)}}} ARGS...", _USAGE_ERROR)
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
