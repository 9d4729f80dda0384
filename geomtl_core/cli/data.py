"""``geomtl data proxy``: export the embedded default dataset in the MP-16 on-disk format; ``geomtl data folds``:
spatial cross-validation folds of a dataset's train/val/test CSVs."""

from __future__ import annotations

import argparse
import time

from geomtl_core.data.proxy.export import ProxyConfig, export_proxy


def _cmd_proxy(args: argparse.Namespace) -> int:
    cfg = ProxyConfig(n=args.n, seed=args.seed, fov_km=args.fov_km, size=args.size, split_grid_deg=args.split_grid_deg,
                      pixel_disjoint=args.pixel_disjoint, buffer_km=args.buffer_km,
                      max_block_share=args.max_block_share)
    t0 = time.perf_counter()
    info = export_proxy(args.out, cfg, progress=not args.quiet)
    counts = info["counts"]
    print(f"{args.out}: {info['n']} samples ({', '.join(f'{k} {v}' for k, v in counts['splits'].items())}) "
          f"in {time.perf_counter() - t0:.1f} s; {counts['water_points']} over water (IGBP 0); "
          f"{_leak_line(info['leakage'])}; see proxy.json")
    return 0


def _leak_line(d: dict) -> str:
    """One phrase of a split's leakage figures: training images kept, and the held-out crops' overlap."""
    text = f"{d['kept_share']:.0%} of eligible training images kept"
    if "max_shared_px_held" in d:
        text += f", largest val/test overlap with training {d['max_shared_px_held']} px"
    return text


def _cmd_folds(args: argparse.Namespace) -> int:
    from geomtl_core.data.folds import write_folds

    info = write_folds(args.root, args.k, args.seed, args.grid_deg, args.buffer_km, args.max_block_share)
    tested = sum(v["test"] for v in info["sizes"].values())
    print(f"{args.root}/folds: {args.k} folds over whole {args.grid_deg:g} deg cells, {tested} test images in all "
          f"(each at most once: {info['tested_once']}); per fold train/val/test: "
          + "; ".join(f"k{j} {v['train']}/{v['val']}/{v['test']} ({_leak_line(info['leakage'][j])})"
                      for j, v in info["sizes"].items())
          + ". Fold j: data.train/val/test = folds/k<j>/..., data.images = folds/pool")
    return 0


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Register ``geomtl data ...``."""
    p = sub.add_parser("data", help="datasets: export the embedded default (proxy) dataset; cross-validation folds")
    dsub = p.add_subparsers(dest="data_command", required=True)
    x = dsub.add_parser("proxy", help="Blue Marble crops at 100K real MP-16 locations, as msgpack shards + CSVs")
    x.add_argument("--out", required=True, help="output folder (train/ val/ test/ shards, CSVs, proxy.json)")
    x.add_argument("--n", type=int, default=None, help="number of locations (a seeded subset; default all 100,000)")
    x.add_argument("--seed", type=int, default=0, help="seed of the subset and of the split (0)")
    d = ProxyConfig()
    x.add_argument("--fov-km", type=float, default=d.fov_km, help=f"width of a crop on the ground in km ({d.fov_km:g})")
    x.add_argument("--size", type=int, default=d.size, help=f"crop size in pixels ({d.size})")
    x.add_argument("--pixel-disjoint", action=argparse.BooleanOptionalAction, default=d.pixel_disjoint,
                   help="leave out training crops that share a source pixel with a val/test crop (default on)")
    x.add_argument("--split-grid-deg", type=float, default=d.split_grid_deg,
                   help=f"locations in the same cell of this lat/lon grid share a split (default {d.split_grid_deg}; "
                        "1e-4: identical coordinates only)")
    x.add_argument("--buffer-km", type=float, default=d.buffer_km,
                   help=f"leave out training locations this close to a val/test location (default {d.buffer_km})")
    x.add_argument("--max-block-share", type=float, default=d.max_block_share,
                   help=f"at most this share of val/test in one 5-degree block (default {d.max_block_share})")
    x.add_argument("--quiet", action="store_true", help="no progress bar")
    x.set_defaults(handler=_cmd_proxy)
    f = dsub.add_parser("folds", help="spatial k-fold cross-validation of ROOT/{train,val,test}.csv by whole grid "
                                      "cells (CSVs in ROOT/folds/k<j>/, images linked in ROOT/folds/pool)")
    f.add_argument("root", help="dataset folder with train/ val/ test/ shards and their CSVs")
    f.add_argument("--k", type=int, default=10, help="number of folds (10: the proxy's split is fold 9)")
    f.add_argument("--seed", type=int, default=d.seed, help=f"seed of the cells' hash (default {d.seed})")
    f.add_argument("--grid-deg", type=float, default=d.split_grid_deg, help="cells of this many degrees stay together")
    f.add_argument("--buffer-km", type=float, default=d.buffer_km, help="training locations this close to a val/test "
                                                                          "location are left out of a fold")
    f.add_argument("--max-block-share", type=float, default=d.max_block_share,
                   help="at most this share of a fold's val/test in one 5-degree block")
    f.set_defaults(handler=_cmd_folds)
