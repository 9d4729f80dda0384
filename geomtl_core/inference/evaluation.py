"""Evaluate a model on a split: geolocation accuracy per partitioning and hierarchical,
scene accuracy, and a per-image predictions CSV that ``geomtl score`` reads.

Unreadable images are never scored (no neighbour's prediction stands in for them): they are
dropped, counted in ``skipped``, printed to stderr and listed beside the predictions CSV.
"""

from __future__ import annotations

import sys
from pathlib import Path

from geomtl_core.data.predictions import write_predictions
from geomtl_core.errors import InputError
from geomtl_core.geo.geodesy import haversine_km
from geomtl_core.geo.geolocate import geolocate, softmax
from geomtl_core.geo.metrics import summarize_errors
from geomtl_core.geo.partitioning import Hierarchy, Partitioning
from geomtl_core.geo.stats import spatial_blocks

import numpy as np
import torch
from tqdm.auto import tqdm


def predict_probabilities(
    model, loader, tasks: list[str], progress: bool = True, from_features: bool = False
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Softmax probabilities of every task over a loader (five-crop batches averaged over crops), and
    which samples were actually read (batches of ``(x, y, weight)`` mark unreadable ones with weight 0).

    ``from_features``: the loader yields pooled backbone features (see geomtl_core.data.features).
    """
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
            out[t].append(p.reshape(len(x), crops, -1).mean(axis=1) if crops > 1 else p)
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
    """
    tasks = [p.name for p in parts] + [t for t in split.labels.targets if t not in {p.name for p in parts}]
    tasks = [t for t in tasks if t in model.task_names]
    probs, valid = predict_probabilities(model, split.loader, tasks, progress=progress,
                                         from_features=from_features)
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
