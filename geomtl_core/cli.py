"""The ``geomtl`` command line: one subcommand per task, each a thin call into geomtl_core."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from geomtl_core.geodesy import InvalidCoordinatesError
from geomtl_core.metrics import summarize_errors
from geomtl_core.partitioning import CellsFileError
from geomtl_core.predictions import PredictionFileError, read_predictions

Handler = Callable[[argparse.Namespace], int]


def _cmd_score(args: argparse.Namespace) -> int:
    """Print the accuracy table (or JSON) of a per-image prediction file."""
    preds = read_predictions(args.predictions)
    summary = summarize_errors(preds.errors_km, with_ci=args.ci)
    if args.json:
        print(json.dumps(summary.to_json_dict()))
    else:
        print(f"{args.predictions} ({preds.layout} layout)")
        print(summary.to_table())
    return 0


def _add_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="accuracy at 1/25/200/750/2500 km of a per-image prediction CSV")
    p.add_argument("predictions", help="CSV in GeoEstimation's or geomtl's per-image layout")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--ci", action="store_true", help="add bootstrap 95%% confidence intervals")
    p.set_defaults(handler=_cmd_score)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; each subcommand module registers itself here."""
    parser = argparse.ArgumentParser(prog="geomtl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_score(sub)
    from geomtl_core import cli_partition

    cli_partition.add_subcommands(sub)
    from geomtl_core import cli_data

    cli_data.add_subcommands(sub)
    from geomtl_core import cli_model

    cli_model.add_subcommands(sub)
    from geomtl_core import cli_predict

    cli_predict.add_subcommands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, dispatch, and turn known input errors into exit status 2."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (PredictionFileError, InvalidCoordinatesError, CellsFileError, ValueError, FileNotFoundError,
            FileExistsError) as exc:
        print(f"geomtl {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
