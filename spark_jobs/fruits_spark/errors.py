"""How a job reports a mistake its user made: one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

USAGE_EXIT_CODE = 2


class JobInputError(Exception):
    """A problem with the job's input or arguments that the user can fix; the message says how."""


def run_cli(main: Callable[[Sequence[str]], None], argv: Sequence[str] | None, prog: str) -> None:
    """Run a job's ``main`` and turn a :class:`JobInputError` into ``prog: error: ...`` and exit 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        main(sys.argv[1:] if argv is None else argv)
    except JobInputError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        sys.exit(USAGE_EXIT_CODE)
