"""``geomtl evaluate``: score a bundle on a split of shards or on a benchmark as distributed (a folder of
photos and its metadata CSV), into an output of its own, never into the bundle's training outputs.

A bundle carrying a retrieval gallery (``gallery.npz`` with ``hybrid.json``) is also scored with the hybrid
predictor (method ``hybrid``, :func:`_add_hybrid`), which becomes the best method (``predictions.csv``); the
classifier's methods are scored and written as before. ``--no-retrieval`` scores the classifier alone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from geomtl_core.errors import InputError

if TYPE_CHECKING:
    from geomtl_core.inference.retrieval import Retrieval

SUMMARY_KEYS = ("n", "acc_1km", "acc_25km", "acc_200km", "acc_750km", "acc_2500km", "median_km", "mean_km",
                "geoscore")
MARKER = "evaluation.json"
"""The summary every evaluate output folder holds: only such a folder is replaced by ``--overwrite``."""


META_HINT = ("give the benchmark's metadata: a CSV or TSV such as IMG_ID,AUTHOR,LAT,LON,... (Im2GPS), "
             "name,...,lat,lon,... (YFCC), or name, lat, lon, file without a header (landmarks.tsv)")
DATA_HINT = "give --data a folder with SPLIT.csv and SPLIT/ shards (e.g. from geomtl data proxy), or a SPLIT.csv"


def _source(args: argparse.Namespace) -> tuple[str, str]:
    """(kind, name) of what is evaluated, checked before the model loads: ``data`` (shards: the split name)
    or ``images`` (a folder of photos: the metadata file's stem)."""
    from geomtl_core.cli.checks import require_folder, require_text_file
    from geomtl_core.config import validate_split_name

    if args.images or args.meta:
        if args.data:
            raise InputError("give either --data (shards) or --images with --meta (a folder of photos), not both")
        if not (args.images and args.meta):
            raise InputError("--images and --meta go together: a folder of photos and its metadata CSV")
        if not Path(args.images).is_dir():
            raise InputError(f"image folder not found: {args.images}; give --images the folder of the benchmark's "
                             "photos")
        require_text_file(args.meta, "metadata file", META_HINT)
        return "images", Path(args.meta).stem
    if not args.data:
        raise InputError("nothing to evaluate on: give --data DIR (shards and SPLIT.csv) or --images DIR --meta CSV")
    data = Path(args.data)
    if data.suffix == ".csv":
        require_text_file(data, "split metadata", DATA_HINT)
        return "data", data.stem
    split = validate_split_name(args.split)
    require_folder(data, "data folder", DATA_HINT)
    require_text_file(data / f"{split}.csv", f"metadata of split {split!r}", DATA_HINT)
    return "data", split


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def output_paths(args: argparse.Namespace, name: str, five_crop: bool, hierarchy: bool,
                 suffix: str = "", create: bool = True) -> tuple[Path, Path]:
    """(predictions CSV, summary JSON), refusing to write among the bundle's own files or over an earlier
    output unless ``--overwrite`` (which replaces only an earlier evaluate output). ``create=False`` only checks
    (before the model loads); else an earlier output is removed and the folder made."""
    bundle = Path(args.bundle)
    if args.out and Path(args.out).suffix == ".csv":  # a predictions file; the per-method files beside it
        csv = Path(args.out)
        if csv.parent.resolve() == bundle.resolve():
            raise InputError(f"--out {csv} is among the bundle's training outputs; write elsewhere "
                             "(default: a new folder BUNDLE/eval-NAME/)")
        if csv.exists() and not args.overwrite:
            raise FileExistsError(f"{csv} exists; pass --overwrite to replace it, or another --out")
        if not csv.parent.is_dir():
            raise InputError(f"--out {csv}: folder {csv.parent} does not exist; create it first or write elsewhere")
        return csv, csv.with_suffix(".evaluation.json")
    default = "eval-" + name + ("-fivecrop" if five_crop else "") + ("" if hierarchy else "-nohierarchy") + suffix
    folder = Path(args.out) if args.out else bundle / default
    if _inside(bundle, folder):
        raise InputError(f"--out {folder} is the bundle's folder (or holds it); choose a new folder")
    if folder.exists():
        if not args.overwrite:
            raise FileExistsError(f"{folder} exists (an earlier evaluation?); pass --overwrite to replace it, "
                                  "or --out to write elsewhere")
        if not folder.is_dir() or (any(folder.iterdir()) and not (folder / MARKER).is_file()):
            raise InputError(f"{folder} is not an output of geomtl evaluate (no {MARKER}); --overwrite replaces "
                             "only those; choose another --out")
        if create:
            shutil.rmtree(folder)
    if create:
        folder.mkdir(parents=True)
    return folder / "predictions.csv", folder / MARKER


def _add_hybrid(res: dict, bundle, retrieval: Retrieval, split_data, out_csv: Path, crop_reduce: str,
                progress: bool) -> None:
    """Score the hybrid on the split into ``res`` (method ``hybrid``, now the best) and write its predictions
    (``<csv stem>.hybrid.csv`` and the best file, the evaluation's layout). One more backbone pass over the split
    gives the embeddings (crops' mean) and, from them, the query probabilities (crops reduced by ``crop_reduce``)."""
    from geomtl_core.data.predictions import write_predictions
    from geomtl_core.geo.geodesy import haversine_km
    from geomtl_core.geo.geolocate import softmax
    from geomtl_core.geo.metrics import summarize_errors
    from geomtl_core.geo.stats import spatial_blocks
    from geomtl_core.inference.predict import features_and_logits

    import numpy as np
    from tqdm.auto import tqdm

    parts = bundle.parts
    emb, probs, valid = [], {p.name: [] for p in parts}, []
    for batch in tqdm(split_data.loader, desc="embed", disable=not progress, leave=False):
        x = batch[0]
        valid.append(np.asarray(batch[2]) > 0 if len(batch) > 2 else np.ones(len(x), bool))
        n, crops = len(x), x.shape[1] if x.ndim == 5 else 1
        feats, logits = features_and_logits(bundle.model, x.reshape(n * crops, *x.shape[2:]) if crops > 1 else x)
        emb.append(feats.reshape(n, crops, -1).mean(axis=1))
        for t in probs:
            pr = softmax(logits[t]).reshape(n, crops, -1)
            probs[t].append(pr.max(axis=1) if crop_reduce == "max" else pr.mean(axis=1))
    ok = np.concatenate(valid)
    if int(ok.sum()) != res["n"]:
        raise RuntimeError(f"the hybrid read {int(ok.sum())} images, the classifier's evaluation {res['n']}")
    scores = retrieval.cell_scores({t: np.concatenate(v)[ok] for t, v in probs.items()}, parts)
    answer = retrieval.answer(np.concatenate(emb)[ok], scores, parts[-1])
    lat, lon = answer.lat, answer.lon
    labels = split_data.labels
    true_lat, true_lon, img_id = labels.lat[ok], labels.lon[ok], labels.img_id[ok]
    err = haversine_km(true_lat, true_lon, lat, lon)
    res["methods"]["hybrid"] = summarize_errors(err, with_ci=True,
                                                blocks=spatial_blocks(true_lat, true_lon)).to_json_dict()
    res["best"] = "hybrid"
    res["hybrid"] = dict(retrieval.settings) | {"embedding": retrieval.embedding,
                                                "gallery_images": len(retrieval.gallery)}
    hybrid_csv = out_csv.with_suffix(".hybrid.csv")
    for path in (out_csv, hybrid_csv):
        write_predictions(path, img_id, true_lat, true_lon, lat, lon,
                          extra={"fine_class": answer.fine_class, "score": np.round(answer.score, 6)})
    res.setdefault("prediction_files", {})["hybrid"] = str(hybrid_csv)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from geomtl_core.cli.checks import check_bundle, is_terminal
    from geomtl_core.files import GALLERY_FILE

    # every input and the output place are checked before torch, keras and the model load
    kind, name = _source(args)
    if args.batch_size is not None and args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.workers < 0:
        raise InputError(f"--workers must be >= 0, got {args.workers}")
    labels = check_bundle(args.bundle)
    if kind == "images":
        from geomtl_core.data.metadata import read_metadata

        meta = read_metadata(args.meta)
        if meta.attrs["skipped"]:
            lines = meta.attrs["skipped_lines"]
            print(f"evaluation: {len(lines)} rows of {args.meta} have no coordinates (lines "
                  f"{', '.join(map(str, lines[:10]))}{', …' if len(lines) > 10 else ''}): not scored", file=sys.stderr)
    recipe = labels.get("inference")  # the bundle's own test-time recipe (an imported model's)
    five_crop = bool(args.five_crop or (recipe and int(recipe.get("crops", 1)) > 1))
    reduce = str(recipe.get("reduce", "mean")) if recipe else "mean"
    hierarchical = bool(labels.get("hierarchical", True) and not args.no_hierarchy and len(labels["partitionings"]) > 1)
    turned_off = args.no_retrieval and (Path(args.bundle) / GALLERY_FILE).is_file()
    suffix = "-noretrieval" if turned_off else ""
    output_paths(args, name, five_crop, hierarchical, suffix, create=False)
    progress = not args.json and is_terminal()  # progress bars on a terminal only, never in a pipe or a log

    from geomtl_core.config import merge
    from geomtl_core.inference.evaluation import evaluate_split, image_folder_split, with_recipe
    from geomtl_core.inference.retrieval import load_retrieval
    from geomtl_core.models.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    retrieval = None if args.no_retrieval else load_retrieval(bundle)
    hierarchy = bundle.hierarchy if hierarchical else None
    batch = args.batch_size or (16 if recipe else bundle.config.train.batch_size)
    if kind == "images":
        split_data, report = image_folder_split(
            args.images, args.meta, bundle.parts, int(bundle.labels["image_size"]), list(bundle.scene_tasks),
            five_crop=five_crop, recipe=recipe, batch_size=batch, workers=args.workers)
    else:
        from geomtl_core.data.loaders import load_meta, split_loader

        data = Path(args.data)
        root, split = (data.parent, data.stem) if data.suffix == ".csv" else (data, args.split)
        cfg = merge(bundle.config, {"data": {"root": str(root), "test": split, "five_crop": five_crop,
                                             "workers": args.workers}, "train": {"batch_size": batch}})
        split_data = split_loader(cfg, "test", load_meta(cfg, "test"), bundle.parts, train=False)
        if recipe:
            split_data = with_recipe(split_data, recipe, batch, args.workers)
        report = split_data.labels.report
    out_csv, summary = output_paths(args, name, five_crop, hierarchy is not None, suffix)
    res = evaluate_split(bundle.model, split_data, bundle.parts, hierarchy, out_csv, progress=progress,
                         crop_reduce=reduce)
    if retrieval is not None:
        _add_hybrid(res, bundle, retrieval, split_data, out_csv, reduce, progress=progress)
    options = {"bundle": str(args.bundle), "data": args.data, "split": name if kind == "data" else None,
               "images": args.images, "meta": args.meta, "five_crop": five_crop, "crop_reduce": reduce,
               "hierarchy": hierarchy is not None, "recipe": recipe, "retrieval": retrieval is not None}
    summary.write_text(json.dumps({"options": options, "data_report": report} | res, indent=2, default=str))
    if kind == "images" and report["images_without_metadata"]:
        print(f"evaluation: {report['images_without_metadata']} files in {args.images} have no row in "
              f"{args.meta} (not scored)", file=sys.stderr)
    best = res["methods"][res["best"]]
    if args.json:
        print(json.dumps({k: best[k] for k in SUMMARY_KEYS} | {"skipped": res["skipped"],
                                                                "predictions": str(out_csv)}))
        return 0
    crops = f", five crops ({reduce})" if five_crop else ""
    print(f"{args.bundle} on {name} ({res['best']}{crops}): {res['n']} images scored, {res['skipped']} "
          f"unreadable or missing skipped; predictions in {out_csv}")
    for method, m in res["methods"].items():
        accs = " ".join(f"{m[f'acc_{t}km']:.3f}" for t in (1, 25, 200, 750, 2500))
        print(f"  {method:>16}: acc@1/25/200/750/2500 km {accs}  median {m['median_km']:.0f} km")
    for t, a in res["scene_accuracy"].items():
        print(f"  scene {t}: top-1 {a:.3f}")
    return 0


def add_subcommand(sub: argparse._SubParsersAction) -> None:
    """Register ``geomtl evaluate``."""
    e = sub.add_parser(
        "evaluate", help="evaluate a bundle on a split or a folder of photos; writes per-image predictions",
        description="Evaluate a bundle on a split of shards (--data) or on a benchmark as distributed: a folder "
                    "of photos and its metadata CSV (--images, --meta; Im2GPS, Im2GPS3k, YFCC4k layouts). Writes "
                    "a new output folder, by default BUNDLE/eval-NAME[-fivecrop][-nohierarchy][-noretrieval]/, "
                    "never the bundle's own files. A bundle carrying a retrieval gallery is scored with the hybrid "
                    "predictor too (method hybrid, the best), unless --no-retrieval.")
    e.add_argument("bundle", help="bundle folder (from geomtl train or geomtl import)")
    e.add_argument("--data", help="data folder with SPLIT.csv and SPLIT/ shards, or a SPLIT.csv")
    e.add_argument("--split", default="test", help="split of --data: train, val or test (default test)")
    e.add_argument("--images", help="folder of photos, scored against --meta")
    e.add_argument("--meta", help="metadata CSV or TSV of --images (IMG_ID,AUTHOR,LAT,LON,... or name,...,lat,lon or "
                                  "YFCC100M's ...,lon,lat,..., or no header: name, lat, lon, file, ... as "
                                  "landmarks.tsv); ids are file paths relative to --images (or file names)")
    e.add_argument("--out", help="new output folder (default BUNDLE/eval-NAME[-fivecrop][-nohierarchy]"
                                 "[-noretrieval]/), or a predictions .csv path (per-method files beside it)")
    e.add_argument("--overwrite", action="store_true", help="replace an earlier evaluate output at that place")
    e.add_argument("--json", action="store_true", help="print the geomtl score JSON keys, plus skipped and "
                                                       "predictions (the CSV's path)")
    e.add_argument("--five-crop", action="store_true", help="five-crop test-time augmentation (mean of the "
                   "crops; an imported GeoEstimation bundle always uses its own: five crops, maximum)")
    e.add_argument("--no-hierarchy", action="store_true", help="use the finest partitioning alone")
    e.add_argument("--no-retrieval", action="store_true",
                   help="use the classifier alone even when the bundle carries a retrieval gallery")
    e.add_argument("--batch-size", type=int, help="images per batch (default: the bundle's training batch; "
                                                  "16 for an imported GeoEstimation bundle)")
    e.add_argument("--workers", type=int, default=2, help="image decoding processes (0: in this process)")
    e.set_defaults(handler=_cmd_evaluate)
