"""``geomtl data proxy``: export the embedded default dataset in the MP-16 on-disk format; ``geomtl data folds``:
spatial cross-validation folds of a dataset's train/val/test CSVs; ``geomtl data shards``: your own geotagged
photos in the same format."""

from __future__ import annotations

import argparse
import sys
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


PHOTOS_HINT = "give the folder of your photos (searched at any depth)"
META_HINT = ("give a CSV or TSV of file name, latitude, longitude (a header such as IMG_ID,LAT,LON or name,lat,lon, "
             "or none: name, lat, lon, ... as landmarks.tsv), or --exif to read the photos' EXIF GPS")


def _cmd_shards(args: argparse.Namespace) -> int:
    from geomtl_core.cli.checks import is_terminal, require_folder, require_text_file
    from geomtl_core.errors import InputError

    # every input is checked before a photo is read or a file written (this command never imports torch)
    require_folder(args.photos, "photo folder", PHOTOS_HINT)
    if args.meta is None and not args.exif:
        raise InputError("no coordinates given: pass --meta FILE (a CSV or TSV of file name, latitude, longitude) "
                         "or --exif (the photos' EXIF GPS)")
    if args.meta is not None and args.exif:
        raise InputError("give either --meta FILE or --exif, not both")
    if args.meta is not None:
        require_text_file(args.meta, "locations file", META_HINT)
    from geomtl_core.data.own_photos import MARKER, SKIPPED, ShardOptions, build_shards, check_out

    opts = ShardOptions(size=args.size, per_shard=args.per_shard, seed=args.seed, buffer_km=args.buffer_km,
                        grid_deg=args.grid_deg)
    check_out(args.out, args.force)
    t0 = time.perf_counter()
    info = build_shards(args.photos, args.out, meta=args.meta, exif=args.exif, options=opts, force=args.force,
                        progress=not args.quiet and is_terminal())
    counts, why = info["counts"], info["skipped_by_reason"]
    skipped = f"{info['skipped']} skipped" + (f" ({', '.join(f'{n} {k}' for k, n in why.items())}; listed in "
                                              f"{args.out}/{SKIPPED})" if why else "")
    print(f"{args.out}: {info['n']} photos ({', '.join(f'{k} {v}' for k, v in counts.items())}) of "
          f"{info['files']} files in {args.photos}; {skipped}; {time.perf_counter() - t0:.1f} s; see {MARKER}")
    for split in info["empty_splits"]:
        print(f"geomtl data shards: warning: split {split} is empty (no {split}.csv written): the photos lie in "
              f"{info['cells']} cells of {args.grid_deg:g} deg; a smaller --grid-deg makes more cells",
              file=sys.stderr)
    loc = info.get("locations")
    if loc and loc["rows_without_photo"]:
        shown = ", ".join(loc["ids_without_photo"][:5]) + (", ..." if loc["rows_without_photo"] > 5 else "")
        print(f"geomtl data shards: note: {loc['rows_without_photo']} rows of {args.meta} match no photo "
              f"({shown})", file=sys.stderr)
    if loc and loc["columns_left_out"]:
        print(f"geomtl data shards: note: columns of {args.meta} not copied (missing or non-integer labels): "
              f"{', '.join(loc['columns_left_out'])}", file=sys.stderr)
    return 0


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Register ``geomtl data ...``."""
    p = sub.add_parser("data", help="datasets: export the embedded default (proxy) dataset; cross-validation folds; "
                                    "your own photos as shards")
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
    s = dsub.add_parser("shards", help="your own geotagged photos as msgpack shards + CSVs (train/val/test by a "
                                       "spatial split), for geomtl train and geomtl evaluate --data",
                        description="Write a folder of photos with known locations in the MP-16 on-disk format: "
                                    "OUT/{train,val,test}/ shards and OUT/{train,val,test}.csv, split by whole grid "
                                    "cells. Files that are no image or do not decode and photos without coordinates "
                                    "are skipped and listed in OUT/skipped.csv. An existing OUT is kept unless "
                                    "--force; an interrupted run resumes from OUT's staging folder .OUT.partial.")
    s.add_argument("photos", help="folder of photos (searched at any depth; hidden files ignored)")
    s.add_argument("--meta", help="CSV or TSV of the photos' coordinates: file name (or path under PHOTOS, or "
                                  "stem), lat, lon (IMG_ID,AUTHOR,LAT,LON,..., name,lat,lon, or no header as "
                                  "landmarks.tsv); *_Label columns are copied")
    s.add_argument("--exif", action="store_true", help="take the coordinates from the photos' EXIF GPS instead")
    s.add_argument("--out", required=True, help="new output folder (train/ val/ test/ shards, CSVs, skipped.csv, "
                                                "shards.json)")
    s.add_argument("--seed", type=int, default=0, help="seed of the split (0)")
    s.add_argument("--size", type=int, default=256, help="short side of the stored photos in pixels (256; "
                                                         "smaller photos are not enlarged)")
    s.add_argument("--per-shard", type=int, default=10_000, help="photos per shard file (10000)")
    s.add_argument("--buffer-km", type=float, default=25.0,
                   help="leave out training photos this close to a val/test photo (25; 0: none)")
    s.add_argument("--grid-deg", type=float, default=1.0,
                   help="photos in the same cell of this lat/lon grid share a split (1)")
    s.add_argument("--force", action="store_true", help="replace an earlier output of this command at OUT")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(handler=_cmd_shards)
