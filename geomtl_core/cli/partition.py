"""``geomtl partition build|assign|relate|map``: S2 partitionings from the command line."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from geomtl_core.cli.checks import require_output_file, require_text_file
from geomtl_core.data.metadata import read_coordinates_csv
from geomtl_core.geo.partitioning import build_partitionings, partition_name, read_cells_csv, relate, write_cells_csv

import numpy as np

COORDS_HINT = "give a CSV with latitude/longitude columns (LAT/LON, lat/lon or latitude/longitude)"
CELLS_HINT = "give a cells CSV (GeoEstimation's published layout, or one that geomtl partition build wrote)"


def _coords(path: str) -> str:
    return str(require_text_file(path, "coordinates file", COORDS_HINT))


def _cells(path: str) -> str:
    return str(require_text_file(path, "cells file", CELLS_HINT))


def _line_labels(n: int) -> np.ndarray:
    return np.array([f"line {k + 2}" for k in range(n)])


def _cmd_build(args: argparse.Namespace) -> int:
    df, lat, lon = read_coordinates_csv(_coords(args.coords))
    tau_max = args.tau_max or [5000, 2000, 1000]
    from geomtl_core.geo.geodesy import validate_coordinates

    validate_coordinates(df[lat], df[lon], labels=_line_labels(len(df)))
    parts = build_partitionings(df[lat], df[lon], tau_max, args.tau_min, args.lvl_min, args.lvl_max)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "source": str(args.coords),
        "source_sha256": hashlib.sha256(Path(args.coords).read_bytes()).hexdigest(),
        "n_points": len(df),
        "tau_min": args.tau_min,
        "lvl_min": args.lvl_min,
        "lvl_max": args.lvl_max,
        "partitionings": [],
    }
    for t, part in zip(tau_max, parts, strict=True):
        path = write_cells_csv(part, out / f"{partition_name(args.tau_min, t)}.csv")
        meta["partitionings"].append(
            {"file": path.name, "tau_max": t, "classes": len(part), "points_in_cells": part.points_in_cells}
        )
        print(f"{path}: {len(part)} classes, {part.points_in_cells} of {len(df)} points in cells")
    (out / "partitionings.json").write_text(json.dumps(meta, indent=2))
    return 0


def _cmd_assign(args: argparse.Namespace) -> int:
    part = read_cells_csv(_cells(args.cells))
    df, lat, lon = read_coordinates_csv(_coords(args.coords))
    df["class_label"] = part.assign(df[lat], df[lon], labels=_line_labels(len(df)))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    unassigned = int((df["class_label"] < 0).sum())
    print(f"{args.out}: {len(df) - unassigned} assigned, {unassigned} unassigned (class_label -1) of {len(df)}")
    return 0


def _cmd_relate(args: argparse.Namespace) -> int:
    if args.out:
        require_output_file(args.out, "--out")
    parts = [read_cells_csv(_cells(p)) for p in args.cells]
    hier = relate(parts)
    for k, p in enumerate(parts):
        print(f"{p.name}: {len(p)} classes; fine classes without an ancestor here: {len(hier.orphans.get(k, []))}")
    if args.out:
        np.savetxt(args.out, hier.matrix, fmt="%d", delimiter=",", header=",".join(p.name for p in parts))
    return 0


def _cmd_map(args: argparse.Namespace) -> int:
    require_output_file(args.out, "--out")
    part = read_cells_csv(_cells(args.cells))
    from geomtl_core.geo.basemap import plot_partitioning

    fig = plot_partitioning(part)
    fig.savefig(args.out, dpi=args.dpi, bbox_inches="tight")
    print(f"{args.out}: map of {len(part)} cells")
    return 0


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Register ``geomtl partition ...``."""
    p = sub.add_parser("partition", help="build, assign, relate and map adaptive S2 partitionings")
    psub = p.add_subparsers(dest="partition_command", required=True)

    b = psub.add_parser("build", help="build partitionings (published cells CSV format) from coordinates")
    b.add_argument("coords", help="CSV with LAT/LON, lat/lon or latitude/longitude columns")
    b.add_argument("--tau-min", type=int, default=50, help="drop cells with <= this many points (50)")
    b.add_argument("--tau-max", type=int, action="append", help="split cells above this; repeat (5000 2000 1000)")
    b.add_argument("--lvl-min", type=int, default=2, help="the S2 level every point starts in (default 2)")
    b.add_argument("--lvl-max", type=int, default=30, help="the deepest S2 level a cell is split to (default 30)")
    b.add_argument("--out", required=True, help="output folder")
    b.set_defaults(handler=_cmd_build)

    a = psub.add_parser("assign", help="add class_label (-1: in no cell) to a coordinates CSV")
    a.add_argument("--cells", required=True, help="cells CSV (published format)")
    a.add_argument("coords", help="CSV with LAT/LON, lat/lon or latitude/longitude columns")
    a.add_argument("--out", required=True, help="the CSV written: the input rows with a class column")
    a.set_defaults(handler=_cmd_assign)

    r = psub.add_parser("relate", help="ancestor classes of every fine class (cells files coarse -> fine)")
    r.add_argument("cells", nargs="+", help="cells CSVs, coarse to fine")
    r.add_argument("--out", help="CSV of the hierarchy matrix (fine classes x partitionings)")
    r.set_defaults(handler=_cmd_relate)

    m = psub.add_parser("map", help="cartopy map of a partitioning coloured by images per cell (offline)")
    m.add_argument("cells", help="a cells CSV (GeoEstimation's layout or geomtl's)")
    m.add_argument("--out", required=True, help="PNG path")
    m.add_argument("--dpi", type=int, default=150, help="resolution of the PNG (default 150)")
    m.set_defaults(handler=_cmd_map)
