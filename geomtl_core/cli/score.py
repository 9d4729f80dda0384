"""``geomtl score`` and ``geomtl compare``: accuracy of one per-image prediction file, and the paired
difference of two (bootstrap over spatial blocks of the true locations)."""

from __future__ import annotations

import argparse
import json

from geomtl_core.data.predictions import read_predictions
from geomtl_core.geo.metrics import THRESHOLDS_KM, summarize_errors


def _cmd_score(args: argparse.Namespace) -> int:
    """Print the accuracy table (or JSON) of a per-image prediction file."""
    preds = read_predictions(args.predictions)
    from geomtl_core.geo.stats import spatial_blocks

    blocks = spatial_blocks(preds.true_lat, preds.true_lon, args.block_deg)
    summary = summarize_errors(preds.errors_km, with_ci=args.ci, blocks=blocks)
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
    p.add_argument("--block-deg", type=float, default=5.0, help="block size in degrees for --ci (default 5)")
    p.set_defaults(handler=_cmd_score)


def _cmd_compare(args: argparse.Namespace) -> int:
    """Paired comparison of two per-image prediction files (block bootstrap over the true locations)."""
    from geomtl_core.data.predictions import align_predictions
    from geomtl_core.geo.stats import paired_comparison

    a, b = align_predictions(read_predictions(args.a), read_predictions(args.b), args.a, args.b)
    res = paired_comparison(a.errors_km, b.errors_km, a.true_lat, a.true_lon, THRESHOLDS_KM,
                            block_deg=args.block_deg, n_boot=args.n_boot, seed=args.seed)
    print(json.dumps(res.to_json_dict()) if args.json else res.to_table(args.a, args.b))
    return 0


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="paired accuracy difference A - B of two prediction files, block bootstrap")
    p.add_argument("a", help="per-image predictions A (either layout geomtl score reads)")
    p.add_argument("b", help="per-image predictions B, same images (matched by image id)")
    p.add_argument("--block-deg", type=float, default=5.0, help="spatial block size in degrees (default 5)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap replicates (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object (fractions) instead of a table")
    p.set_defaults(handler=_cmd_compare)


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Register ``geomtl score`` and ``geomtl compare``."""
    _add_score(sub)
    _add_compare(sub)
