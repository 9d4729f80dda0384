"""The ``geomtl`` command line: one subcommand per task, each a thin call into geomtl_core.

One module per command group: :mod:`~geomtl_core.cli.score` (score, compare),
:mod:`~geomtl_core.cli.partition`, :mod:`~geomtl_core.cli.data`, :mod:`~geomtl_core.cli.model`
(train; evaluate from :mod:`~geomtl_core.cli.evaluate`), :mod:`~geomtl_core.cli.predict` and
:mod:`~geomtl_core.cli.importers` (import).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from geomtl_core.errors import InputError

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; each command-group module registers its subcommands."""
    import geomtl_core
    from geomtl_core.cli import data, importers, model, partition, predict, score
    from geomtl_core.cli.text import plain

    parser = argparse.ArgumentParser(prog="geomtl", description=plain(__doc__.splitlines()[0]))
    parser.add_argument("--version", action="version", version=f"geomtl {geomtl_core.__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of input errors too")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (score, partition, data, model, predict, importers):
        group.add_subcommands(sub)
    return parser


USER_ERRORS = (InputError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
               PermissionError)
"""Errors caused by the user's input: printed as one line with exit status 2. Anything else is a bug
and keeps its traceback."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, dispatch, and turn input errors (only) into one line and exit status 2."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except USER_ERRORS as exc:
        if args.debug:
            raise
        print(f"geomtl {args.command}: error: {describe(exc)}", file=sys.stderr)
        return 2


def describe(exc: BaseException) -> str:
    """An input error as one line: an OS error by its file and reason (``x.csv: No such file or directory``, not
    ``[Errno 2] ...``), anything else by its message.

    >>> describe(FileNotFoundError(2, "No such file or directory", "x.csv"))
    'x.csv: No such file or directory'
    """
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)
