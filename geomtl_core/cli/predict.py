"""``geomtl predict BUNDLE IMAGE_OR_FOLDER... [--truth FILE] [--top-k K] [--json | --csv OUT] [--map OUT.png]``.

Prints a table (default), a JSON list (``--json``) or writes one CSV row per file (``--csv``), then
a summary: files in folders skipped as not images (listed once), failed files, and the error statistics
where the true location is known: from ``--truth FILE`` (a CSV/TSV of id or file name -> lat, lon) or else
from the photo's EXIF GPS. The CSV begins with geomtl's prediction layout (``img_id, true_lat, true_lon,
pred_lat, pred_lon, error_km``), so ``geomtl score OUT`` and ``geomtl compare OUT OTHER`` read it as it is.
``--top-k K`` (default 5): ``--json`` lists the K most likely cells of every partitioning (``cells``), and the
table and the CSV show those of the finest partitioning (ranked by its own probability). The CSV adds the columns
``<fine>_lat_R``, ``<fine>_lon_R``, ``<fine>_p_R`` and ``<fine>_token_R`` for the ranks R = 2 to K (``<fine>``: the
finest partitioning's name, as in ``cells``; rank 1 is ``<fine>_token`` and ``<fine>_p``). The table adds a line
under each photo, ``also #R LAT, LON (P) ...``: the cells ranked 1 to K other than the one holding the best
guess (the hierarchy's f* or the hybrid may choose another cell than the finest partitioning's first), at most
K - 1 of them; K = 1 prints the table alone. ``--map`` prints the path of every map it wrote.
A bundle carrying a retrieval gallery (``gallery.npz``, published with its run's ``hybrid.json``) predicts with
the hybrid (method ``hybrid``: the classifier's top cells, then the most similar gallery images within them);
``--no-retrieval`` uses the classifier alone.
Exit status 0 if every image was predicted, 1 if any failed (listed once, in the summary), 2 for usage errors,
found before the model loads and before anything is written (e.g. a missing bundle, a truth file that cannot be
read, no input that can be a photo).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import warnings
from pathlib import Path

from geomtl_core.cli.text import plain
from geomtl_core.data.predictions import TruthTable
from geomtl_core.errors import InputError

CSV_FIXED = ["img_id", "true_lat", "true_lon", "pred_lat", "pred_lon", "error_km",  # geomtl's prediction layout
             "path", "place", "admin1", "country", "country_code", "method", "score"]
CSV_TAIL = ["truth", "error", "warnings"]
RESULT_KEYS = {"pred_lat": "lat", "pred_lon": "lon"}  # CSV column -> result key, where they differ


RANK_FIELDS = ("lat", "lon", "p", "token")  # of a cell in a result's ``cells``, one CSV column each per rank >= 2


def rank_column(part: str, field: str, rank: int) -> str:
    """The CSV column of ``field`` of the finest partitioning ``part``'s cell ranked ``rank`` (2 or more)."""
    return f"{part}_{field}_{rank}"


def csv_columns(bundle, top_k: int = 1) -> list[str]:
    """CSV header: geomtl's prediction layout first (``geomtl score`` reads it), then the path, place and method,
    top-1 token and probability per partitioning, the finest partitioning's cells ranked 2 to ``top_k`` (as many
    as it has), top scene per task, where the truth came from, errors."""
    cols = list(CSV_FIXED)
    for p in bundle.parts:
        cols += [f"{p.name}_token", f"{p.name}_p"]
    fine = bundle.parts[-1]
    for rank in range(2, min(top_k, len(fine)) + 1):
        cols += [rank_column(fine.name, field, rank) for field in RANK_FIELDS]
    for t in bundle.scene_tasks:
        cols += [t, f"{t}_p"]
    return cols + CSV_TAIL


def csv_row(r: dict) -> dict:
    """One flat CSV row of a result dict."""
    row = {k: r.get(RESULT_KEYS.get(k, k)) for k in CSV_FIXED + CSV_TAIL}
    row["warnings"] = "; ".join(r.get("warnings") or [])
    for name, cells in (r.get("cells") or {}).items():
        row[f"{name}_token"], row[f"{name}_p"] = cells[0]["token"], round(cells[0]["p"], 6)
    if r.get("cells"):  # the finest partitioning's runners-up (cells coarse -> fine: the last)
        fine, cells = list(r["cells"].items())[-1]
        for rank, cell in enumerate(cells[1:], start=2):
            for field in RANK_FIELDS:
                row[rank_column(fine, field, rank)] = round(cell["p"], 6) if field == "p" else cell[field]
    for t, s in (r.get("scene") or {}).items():
        row[t], row[f"{t}_p"] = s["label"], round(s["p"], 6)
    return {k: ("" if v is None else v) for k, v in row.items()}


def _table_line(r: dict) -> str:
    path = r["path"] if len(r["path"]) <= 36 else "…" + r["path"][-35:]
    place = f"{r['place']}, {r['country']}"
    scene = ",".join(s["label"] for s in r["scene"].values())
    err = f"{r['error_km']:9.1f}" if r.get("error_km") is not None else " " * 9
    return f"{path:<36} {r['lat']:8.3f} {r['lon']:9.3f}  {place[:34]:<34} {scene[:24]:<24} {err}"


TABLE_HEADER = f"{'file':<36} {'lat':>8} {'lon':>9}  {'nearest place':<34} {'scene':<24} {'error_km':>9}"
ALSO_PER_LINE = 4  # runners-up per continuation line of the table


def _also_lines(r: dict, fine) -> list[str]:
    """The table's continuation lines under a photo: the top-K cells of the finest partitioning ``fine`` other
    than the cell holding the guess (at most K - 1: none for K = 1), as ``#R LAT, LON (P)`` (rank by its
    probability, class centre, probability), four to a line."""
    cells = (r.get("cells") or {}).get(fine.name) or []
    if len(cells) < 2:
        return []
    held = int(fine.assign([r["lat"]], [r["lon"]])[0])  # the guess's own cell (-1: none, e.g. a dropped one)
    alts = [f"#{rank} {c['lat']:.3f}, {c['lon']:.3f} ({c['p']:.3f})" for rank, c in enumerate(cells, start=1)
            if c["class"] != held and (c["lat"], c["lon"]) != (r["lat"], r["lon"])][: len(cells) - 1]
    return ["    also " + "  ".join(alts[i : i + ALSO_PER_LINE]) for i in range(0, len(alts), ALSO_PER_LINE)]


TRUTH_HINT = ("give a CSV or TSV of image id or file name, latitude, longitude (e.g. IMG_ID,AUTHOR,LAT,LON, or "
              "landmarks.tsv's name, lat, lon, file without a header)")


def _check_options(args: argparse.Namespace) -> TruthTable | None:
    """Everything checked before torch and the model load (nothing written yet): options, the bundle folder, the
    output path, the truth file (read here: the truth table) and that some input may be a photo."""
    from geomtl_core.cli.checks import check_bundle, check_photos, require_output_file, require_text_file

    if args.top_k < 1 or args.batch_size < 1:
        raise InputError("--top-k and --batch-size must be at least 1")
    if args.map_dpi < 1:
        raise InputError("--map-dpi must be at least 1")
    check_bundle(args.bundle)
    if args.csv and args.csv != "-":
        require_output_file(args.csv, "--csv")
    truth = None
    if args.truth:
        from geomtl_core.data.truth import read_truth

        truth = read_truth(require_text_file(args.truth, "truth file", TRUTH_HINT))
    check_photos(args.inputs)
    return truth


def _cmd_predict(args: argparse.Namespace) -> int:
    truth = _check_options(args)  # before torch, keras and the model: a mistake costs well under a second
    from geomtl_core.geo.metrics import summarize_errors
    from geomtl_core.inference.predict import iter_predict, scan_inputs
    from geomtl_core.models.bundle import load_bundle

    from PIL import Image
    from tqdm.auto import tqdm

    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)  # our own 64 MP guard refuses
    warnings.filterwarnings("ignore", module="PIL.TiffImagePlugin")  # "Corrupt EXIF data": EXIF read leniently
    report = sys.stderr if args.json or args.csv == "-" else sys.stdout
    if truth is not None and truth.skipped:
        print(f"{args.truth}: {truth.skipped} rows without coordinates skipped", file=report)
    bundle = load_bundle(args.bundle)
    if bundle.caution:
        print(bundle.caution, file=sys.stderr)
    inputs = scan_inputs(args.inputs)
    files = inputs.files
    if not files:
        skipped = f" ({len(inputs.skipped)} files that are not images)" if inputs.skipped else ""
        raise InputError(f"no image files found in {', '.join(args.inputs)}{skipped}")
    csv_file = writer = None
    if args.csv:
        csv_file = sys.stdout if args.csv == "-" else Path(args.csv).open("w", newline="")
        writer = csv.DictWriter(csv_file, fieldnames=csv_columns(bundle, args.top_k))
        writer.writeheader()
    table = not args.json and not args.csv
    if inputs.skipped:
        names = ", ".join(str(p) for p in inputs.skipped[:10]) + (", …" if len(inputs.skipped) > 10 else "")
        print(f"skipped {len(inputs.skipped)} files that are not images: {names}", file=report)
    if table:
        print(TABLE_HEADER)
    results = []
    try:
        for r in iter_predict(bundle, files, args.top_k, args.batch_size, map_out=args.map, map_dpi=args.map_dpi,
                              progress=None if not args.no_progress else False, truth=truth, ids=inputs.ids,
                              retrieval=not args.no_retrieval):
            results.append(r)
            if writer is not None:
                writer.writerow(csv_row(r))
            elif table and not r["error"]:  # failures are listed once, in the summary below
                tqdm.write("\n".join([_table_line(r), *_also_lines(r, bundle.parts[-1])]), file=sys.stdout)
    finally:
        if csv_file is not None and csv_file is not sys.stdout:
            csv_file.close()
    if args.json:
        print(json.dumps(results, indent=1))
    failed = [r for r in results if r["error"]]
    print(f"\n{len(results) - len(failed)} of {len(results)} images predicted" +
          (f", {len(failed)} failed:" if failed else ""), file=report)
    for r in failed:
        print(f"  {r['path']}: {r['error']}", file=report)
    fine = bundle.parts[-1]
    if table and min(args.top_k, len(fine)) > 1 and len(failed) < len(results):
        print(f"also: the other cells among the {min(args.top_k, len(fine))} most likely of the finest "
              f"partitioning ({fine.name}), as #rank lat, lon (probability)", file=report)
    if args.map:
        _map_report(results, report)
    _error_summary([r for r in results if not r["error"]], truth, report, summarize_errors)
    return 1 if failed else 0


def _map_report(results: list[dict], report) -> None:
    """One line per map written, with its path; the maps that could not be written, and why."""
    for r in results:
        if r.get("map"):
            print(f"map written to {r['map']}", file=report)
        for w in r.get("warnings") or []:
            if w.startswith("map not written"):
                print(f"  {r['path']}: {w}", file=report)


def _error_summary(predicted: list[dict], truth, report, summarize_errors) -> None:
    """Where the truth came from, which images the truth file does not list, and the error statistics."""
    from_file = sum(r.get("truth") == "file" for r in predicted)
    from_exif = sum(r.get("truth") == "exif" for r in predicted)
    if truth is not None:
        missing = [r["img_id"] for r in predicted if r.get("truth") != "file"]
        if missing:
            names = ", ".join(missing[:5]) + (", …" if len(missing) > 5 else "")
            print(f"{len(missing)} images not listed in {truth.source}: {names}", file=report)
    errors = [r["error_km"] for r in predicted if r.get("error_km") is not None]
    if errors:
        sources = [f"{n} from {what}" for n, what in ((from_file, truth.source if truth else ""),
                                                       (from_exif, "EXIF GPS")) if n]
        print(f"error against the true locations ({', '.join(sources)}):", file=report)
        print(summarize_errors(errors).to_table(), file=report)


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Register ``geomtl predict``."""
    p = sub.add_parser("predict", help="predict where photos were taken (files or folders) with a bundle",
                       description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="model bundle folder (from geomtl train)")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER",
                   help="image files, or folders (their image files, recursively, sorted; others skipped)")
    p.add_argument("--truth", metavar="FILE",
                   help="true locations: a CSV/TSV of image id or file name -> lat, lon (a header naming them, or "
                        "none: name, lat, lon, ...); each listed image gets its error (else EXIF GPS is used)")
    p.add_argument("--top-k", type=int, default=5, metavar="K",
                   help="cells listed per partitioning in --json; the table and the CSV add up to K - 1 other "
                        "likely cells of the finest partitioning (default 5; 1: the best guess alone)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print a JSON list, one object per file")
    out.add_argument("--csv", metavar="OUT", help="write one CSV row per file to OUT ('-': stdout), in the layout "
                     "geomtl score and geomtl compare read")
    p.add_argument("--map", metavar="OUT.png",
                   help="probability maps: OUT.png for one file; OUT_<stem>.png per file for several "
                        "(or OUT/<stem>.png when OUT is a folder or ends with '/')")
    p.add_argument("--map-dpi", type=int, default=100, help="resolution of the maps (default 100)")
    p.add_argument("--batch-size", type=int, default=32, help="images per model call (default 32)")
    p.add_argument("--no-retrieval", action="store_true",
                   help="use the classifier alone even when the bundle carries a retrieval gallery")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it shows on terminals only)")
    p.set_defaults(handler=_cmd_predict)
