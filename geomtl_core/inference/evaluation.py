"""Evaluate a model on a split: geolocation accuracy per partitioning and hierarchical,
scene accuracy, and a per-image predictions CSV that ``geomtl score`` reads.

Unreadable images are never scored (no neighbour's prediction stands in for them): they are
dropped, counted in ``skipped``, printed to stderr and listed beside the predictions CSV.

:func:`image_folder_split` evaluates a benchmark as distributed (a folder of photos and a metadata CSV in any
layout :func:`geomtl_core.data.metadata.read_metadata` reads); a bundle's ``inference`` recipe (e.g. an
imported GeoEstimation model's five crops, maximum over crops) is applied by :func:`with_recipe`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from geomtl_core.data.dataset import GeoImageDataset, LabelTable, make_loader
from geomtl_core.data.images import TransformConfig
from geomtl_core.data.loaders import SplitData
from geomtl_core.data.metadata import read_metadata
from geomtl_core.data.predictions import write_predictions
from geomtl_core.data.shards import FolderSource
from geomtl_core.errors import InputError
from geomtl_core.geo.geodesy import haversine_km
from geomtl_core.geo.geolocate import geolocate, softmax
from geomtl_core.geo.metrics import summarize_errors
from geomtl_core.geo.partitioning import Hierarchy, Partitioning, partition_name
from geomtl_core.geo.stats import spatial_blocks

import numpy as np
import torch

CROP_REDUCTIONS = ("mean", "max")


def predict_probabilities(
    model, loader, tasks: list[str], progress: bool = True, from_features: bool = False, crop_reduce: str = "mean"
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Softmax probabilities of every task over a loader (five-crop batches reduced over crops by ``crop_reduce``:
    their mean, or GeoEstimation's maximum), and which samples were actually read (batches of ``(x, y, weight)``
    mark unreadable ones with weight 0).

    ``from_features``: the loader yields pooled backbone features (see geomtl_core.data.features).
    """
    if crop_reduce not in CROP_REDUCTIONS:
        raise InputError(f"crop_reduce must be one of {CROP_REDUCTIONS}, got {crop_reduce!r}")
    from tqdm.auto import tqdm  # here, not at import: importing tqdm.auto in a kernel warns about ipywidgets

    out: dict[str, list[np.ndarray]] = {t: [] for t in tasks}
    valid: list[np.ndarray] = []
    for batch in tqdm(loader, desc="predict", disable=not progress, leave=False):
        x = batch[0]
        valid.append(np.asarray(batch[2]) > 0 if len(batch) > 2 else np.ones(len(x), bool))
        crops = x.shape[1] if x.ndim == 5 and not from_features else 1
        flat = x.reshape(-1, *x.shape[-3:]) if crops > 1 else x
        with torch.no_grad():
            logits = model.heads_from_features(flat) if from_features else model(flat, training=False)
        for t in tasks:
            p = softmax(np.asarray(logits[t].detach().cpu().numpy(), dtype=np.float64))
            if crops > 1:
                p = p.reshape(len(x), crops, -1)
                p = p.max(axis=1) if crop_reduce == "max" else p.mean(axis=1)
            out[t].append(p)
    return {t: np.concatenate(v) for t, v in out.items()}, np.concatenate(valid) if valid else np.ones(0, bool)


def evaluate_split(
    model,
    split,
    parts: list[Partitioning],
    hierarchy: Hierarchy | None,
    predictions_csv: str | Path | None = None,
    with_ci: bool = True,
    progress: bool = True,
    from_features: bool = False,
    remedies: dict | None = None,
    fit_remedies: bool = False,
    crop_reduce: str = "mean",
) -> dict:
    """Summaries (JSON-ready) for every partitioning, ``hierarchy`` when given, and scene tasks.

    ``best`` names the method written to the CSV: the hierarchy if present, else the finest partitioning.
    With ``predictions_csv``, every method's per-image predictions are also written beside it as
    ``<stem>.<method>.csv`` (so methods compare paired within one model).
    ``n`` counts the images scored; ``skipped`` the unreadable ones (listed in ``skipped_images``
    and, with ``predictions_csv``, in ``<csv stem>.skipped.tsv``).
    ``fit_remedies`` fits the hierarchy's remedies on this split (returned as ``remedies``); ``remedies``
    applies ones fitted before (see :mod:`geomtl_core.geo.hierarchy_fixes`). With scene tasks and
    ``predictions_csv``, each image's true and predicted scene classes go to ``<csv stem>.scenes.csv``.
    ``crop_reduce``: how five crops' probabilities combine (see :func:`predict_probabilities`).
    """
    tasks = [p.name for p in parts] + [t for t in split.labels.targets if t not in {p.name for p in parts}]
    tasks = [t for t in tasks if t in model.task_names]
    probs, valid = predict_probabilities(model, split.loader, tasks, progress=progress,
                                         from_features=from_features, crop_reduce=crop_reduce)
    skipped = _skipped(split, valid)
    probs = {t: v[valid] for t, v in probs.items()}
    labels = split.labels
    lat, lon, img_id = labels.lat[valid], labels.lon[valid], labels.img_id[valid]
    if not valid.any():
        raise InputError(f"no readable image in the split ({len(valid)} records, all unreadable)")
    if fit_remedies and hierarchy is not None and len(parts) > 1:
        from geomtl_core.geo.hierarchy_fixes import fit

        remedies = fit(probs, {p.name: labels.targets[p.name][valid] for p in parts}, parts, hierarchy, lat, lon)
    locs = geolocate(probs, parts, hierarchy, remedies if hierarchy is not None and len(parts) > 1 else None)
    out: dict = {"n": int(valid.sum()), "skipped": len(skipped), "methods": {}}
    blocks = spatial_blocks(lat, lon)
    for name, g in locs.items():
        err = haversine_km(lat, lon, g.lat, g.lon)
        out["methods"][name] = summarize_errors(err, with_ci=with_ci, blocks=blocks).to_json_dict()
    best = "hierarchy" if "hierarchy" in locs else parts[-1].name
    out["best"] = best
    out["scene_accuracy"] = {
        t: float((probs[t].argmax(1) == labels.targets[t][valid]).mean())
        for t in tasks if t not in locs and t in probs
    }
    out["skipped_images"] = skipped
    if remedies:
        out["remedies"] = remedies
    if predictions_csv is not None:  # the best method, and every method beside it (paired within one model)
        csv = Path(predictions_csv)
        files = {"best": csv, **{name: csv.with_suffix(f".{name}.csv") for name in locs}}
        for name, path in files.items():
            g = locs[best if name == "best" else name]
            write_predictions(path, img_id, lat, lon, g.lat, g.lon,
                              extra={"fine_class": g.fine_class, "score": np.round(g.score, 6)})
        out["prediction_files"] = {k: str(v) for k, v in files.items()}
        scenes = [t for t in out["scene_accuracy"]]
        if scenes:
            import pandas as pd

            table = {"img_id": img_id}
            for t in scenes:
                table |= {f"{t}_true": labels.targets[t][valid], f"{t}_pred": probs[t].argmax(1)}
            pd.DataFrame(table).to_csv(csv.with_suffix(".scenes.csv"), index=False)
        listing = Path(predictions_csv).with_suffix(".skipped.tsv")
        if skipped:
            listing.write_text("img_id\treason\n" + "".join(f"{r['img_id']}\t{r['reason']}\n" for r in skipped))
        elif listing.exists():
            listing.unlink()
    return out


def partition_names(partition: Mapping[str, Any]) -> set[str]:
    """Names of the partitionings a recorded ``config["partition"]`` builds: its cells files' stems, else
    ``cells_<tau_min>_<tau_max>`` per ``tau_max`` (as :func:`geomtl_core.geo.partitioning.build_partitionings`
    names them), so a result file says which of its methods are heads without loading the bundle."""
    if partition.get("cells_files"):
        return {Path(f).stem for f in partition["cells_files"]}
    return {partition_name(partition["tau_min"], t) for t in partition["tau_max"]}


def partition_heads(methods: Iterable[str], partition: Mapping[str, Any]) -> list[str]:
    """The partitioning heads among a run's test ``methods``, coarse -> fine (the order :func:`evaluate_split`
    records them in): the methods named after a partitioning of ``partition`` (the run's recorded
    ``config["partition"]``). A run's other methods (``hierarchy`` and its remedies, the retrieval methods
    ``hybrid`` and ``knn`` a run with ``train.retrieval`` adds) are not heads, so no head comparison picks them."""
    names = partition_names(partition)
    return [m for m in methods if m in names]


def _skipped(split, valid: np.ndarray) -> list[dict[str, str]]:
    """The unreadable records (id and reason), also reported on stderr."""
    rows = []
    for k in np.flatnonzero(~valid):
        reason = "unreadable image"
        if hasattr(split.dataset, "load"):
            try:
                split.dataset.load(int(k))
            except Exception as exc:  # the reason the loader met, read again in this process
                reason = str(exc).replace("\t", " ").replace("\n", " ")
        rows.append({"img_id": str(split.labels.img_id[k]), "reason": reason})
    if rows:
        print(f"evaluation: skipped {len(rows)} unreadable of {len(valid)} images: "
              + ", ".join(r["img_id"] for r in rows[:10]) + (" ..." if len(rows) > 10 else ""), file=sys.stderr)
    return rows


class EvalImages(GeoImageDataset):
    """Evaluation samples that may be missing (``source_index`` -1: a metadata row without its file, reported
    as unreadable) and that may follow a bundle's own test recipe (``recipe["preprocess"] == "geoestimation"``:
    GeoEstimation's PIL resize and five crops, see :mod:`geomtl_core.models.geoestimation`)."""

    def __init__(self, source, labels: LabelTable, transform_cfg: TransformConfig, five_crop: bool = False,
                 recipe: dict | None = None, missing: str = "no image file for this id"):
        super().__init__(source, labels, transform_cfg, train=False, five_crop=five_crop)
        self.recipe, self.missing = recipe, missing
        if recipe is not None and recipe.get("preprocess") != "geoestimation":
            raise InputError(f"unknown inference preprocessing {recipe.get('preprocess')!r} in the bundle")

    def load(self, k: int):
        if int(self.labels.source_index[k]) < 0:
            raise FileNotFoundError(self.missing)
        if self.recipe is None:
            return super().load(k)
        from geomtl_core.models.geoestimation import preprocess_five_crop

        _img_id, data = self.source.read(int(self.labels.source_index[k]))
        return preprocess_five_crop(data, self.recipe["resize"], self.recipe["crop"])

    def placeholder(self):
        if self.recipe is None:
            return super().placeholder()
        crop = int(self.recipe["crop"])
        return torch.zeros((5, crop, crop, 3), dtype=torch.uint8)


def _match_files(ids: np.ndarray, source: FolderSource) -> np.ndarray:
    """Position in ``source`` of each metadata id, -1 if absent: the relative path, else the file name, else the
    name without its extension (each only where it is unique in the folder)."""
    from collections import Counter

    rel = [p.relative_to(source.root).as_posix() for p in source.paths]
    lookups = [dict(zip(rel, range(len(rel)), strict=True))]
    for key in (lambda r: Path(r).name, lambda r: Path(r).stem):
        keys = [key(r) for r in rel]
        count = Counter(keys)
        lookups.append({k: i for i, k in enumerate(keys) if count[k] == 1})
    out = np.full(len(ids), -1, np.int64)
    for j, img_id in enumerate(ids):
        for lookup, key in zip(lookups, (img_id, Path(img_id).name, Path(img_id).stem), strict=True):
            if key in lookup:
                out[j] = lookup[key]
                break
    return out


def image_folder_split(
    images: str | Path,
    meta_csv: str | Path,
    parts: list[Partitioning],
    image_size: int,
    scene_tasks: list[str] | tuple[str, ...] = (),
    five_crop: bool = False,
    recipe: dict | None = None,
    batch_size: int = 32,
    workers: int = 0,
) -> tuple[SplitData, dict[str, int]]:
    """A benchmark as distributed: the photos in ``images`` (any depth) scored against ``meta_csv``.

    Every metadata row is evaluated: its file is the id as a path relative to ``images`` (Im2GPS, YFCC4k,
    YFCC25600 ids), else the unique file with that name or stem. Rows without a file and files that do not
    decode are dropped, counted in ``skipped`` and listed, as unreadable records of shards are. Scene labels
    are scored for the ``scene_tasks`` the metadata has. Returns the split and a report (rows, files, files
    without a metadata row, rows without a file).
    """
    images = Path(images)
    meta = read_metadata(meta_csv)
    source = FolderSource.scan(images)
    pos = _match_files(meta["img_id"].to_numpy(str), source)
    lat, lon = meta["lat"].to_numpy(np.float64), meta["lon"].to_numpy(np.float64)
    targets = {p.name: p.assign(lat, lon) for p in parts}
    targets |= {t: meta[t].to_numpy(np.int64) for t in scene_tasks if t in meta}
    report = {"metadata_rows": len(meta), "images_in_folder": len(source),
              "images_without_metadata": int(len(source) - len(set(pos[pos >= 0].tolist()))),
              "metadata_without_image": int((pos < 0).sum())}
    labels = LabelTable(pos, meta["img_id"].to_numpy(str), lat, lon, targets, report)
    ds = EvalImages(source, labels, TransformConfig(size=image_size), five_crop=five_crop, recipe=recipe,
                    missing=f"no image file for this id in {images}")
    if len(ds) == 0:
        raise InputError(f"{meta_csv}: no rows")
    return SplitData(labels, ds, make_loader(ds, batch_size, workers=workers)), report


def with_recipe(split: SplitData, recipe: dict, batch_size: int, workers: int = 0) -> SplitData:
    """The same split read with a bundle's own test recipe (see :class:`EvalImages`)."""
    ds = EvalImages(split.dataset.source, split.labels, split.dataset.cfg, five_crop=True, recipe=recipe)
    return SplitData(split.labels, ds, make_loader(ds, batch_size, workers=workers))
