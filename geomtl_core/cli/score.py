"""``geomtl score`` and ``geomtl compare``: accuracy of one per-image prediction file, and the paired
difference of two (bootstrap over spatial blocks of the true locations). Both read the CSV that
``geomtl predict --csv`` writes as it is (rows without true or predicted coordinates are skipped, and said so).
"""

from __future__ import annotations

import argparse
import json
import sys

from geomtl_core.cli.checks import require_text_file
from geomtl_core.data.predictions import Predictions, read_predictions
from geomtl_core.geo.metrics import THRESHOLDS_KM, summarize_predictions
from geomtl_core.geo.stats import BLOCK_DEG

PREDICTIONS_HINT = ("give the per-image CSV that `geomtl predict --csv OUT` or `geomtl evaluate` writes, or "
                    "GeoEstimation's published results (img_id,gt_lat,predicted_lat,gt_long,predicted_long,...)")


def _read(path: str) -> Predictions:
    """A prediction file, checked first: a missing, empty or binary file is named with what to give instead."""
    return read_predictions(require_text_file(path, "prediction file", PREDICTIONS_HINT))


def _skipped_note(preds: Predictions, name: str) -> None:
    if preds.skipped:
        print(f"{name}: {preds.skipped} rows without true or predicted coordinates skipped (failed images, or no "
              "known truth)", file=sys.stderr)


def _cmd_score(args: argparse.Namespace) -> int:
    """Print the accuracy table (or JSON) of a per-image prediction file."""
    preds = _read(args.predictions)
    _skipped_note(preds, args.predictions)
    # the one interval of the project: the API's default (block bootstrap over the true locations' blocks)
    summary = summarize_predictions(preds.true_lat, preds.true_lon, preds.pred_lat, preds.pred_lon,
                                    with_ci=args.ci, block_deg=args.block_deg)
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
    p.add_argument("--ci", action="store_true",
                   help="add 95%% confidence intervals (bootstrap over spatial blocks of the true locations)")
    p.add_argument("--block-deg", type=float, default=BLOCK_DEG,
                   help=f"block size in degrees for --ci (default {BLOCK_DEG:g})")
    p.set_defaults(handler=_cmd_score)


def _cmd_compare(args: argparse.Namespace) -> int:
    """Paired comparison of two per-image prediction files (block bootstrap over the true locations)."""
    from geomtl_core.data.predictions import align_predictions, common_ids
    from geomtl_core.geo.stats import paired_comparison

    a, b = _read(args.a), _read(args.b)
    _skipped_note(a, args.a)
    _skipped_note(b, args.b)
    if args.common:
        n, only_a, only_b = common_ids(a, b)
        print(f"--common: {n} images in both files; dropped {only_a} only in {args.a}, {only_b} only in {args.b}",
              file=sys.stderr)
    a, b = align_predictions(a, b, args.a, args.b, common=args.common)
    res = paired_comparison(a.errors_km, b.errors_km, a.true_lat, a.true_lon, THRESHOLDS_KM,
                            block_deg=args.block_deg, n_boot=args.n_boot, seed=args.seed)
    print(json.dumps(res.to_json_dict()) if args.json else res.to_table(args.a, args.b))
    return 0


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="paired accuracy difference A - B of two prediction files, block bootstrap")
    p.add_argument("a", help="per-image predictions A (either layout geomtl score reads)")
    p.add_argument("b", help="per-image predictions B, same images (matched by image id)")
    p.add_argument("--common", action="store_true",
                   help="compare the images in both files only (says how many were dropped from each side)")
    p.add_argument("--block-deg", type=float, default=BLOCK_DEG,
                   help=f"spatial block size in degrees (default {BLOCK_DEG:g})")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap replicates (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object (fractions) instead of a table")
    p.set_defaults(handler=_cmd_compare)


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Register ``geomtl score`` and ``geomtl compare``."""
    _add_score(sub)
    _add_compare(sub)
