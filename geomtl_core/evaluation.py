"""Evaluate a model on a split: geolocation accuracy per partitioning and hierarchical,
scene accuracy, and a per-image predictions CSV that ``geomtl score`` reads."""

from __future__ import annotations

from pathlib import Path

from geomtl_core.geodesy import haversine_km
from geomtl_core.geolocate import geolocate, predict_probabilities
from geomtl_core.metrics import summarize_errors
from geomtl_core.partitioning import Hierarchy, Partitioning
from geomtl_core.predictions import write_predictions

import numpy as np


def evaluate_split(
    model,
    split,
    parts: list[Partitioning],
    hierarchy: Hierarchy | None,
    predictions_csv: str | Path | None = None,
    with_ci: bool = True,
    progress: bool = True,
    from_features: bool = False,
) -> dict:
    """Summaries (JSON-ready) for every partitioning, ``hierarchy`` when given, and scene tasks.

    ``best`` names the method written to the CSV: the hierarchy if present, else the finest partitioning.
    """
    tasks = [p.name for p in parts] + [t for t in split.labels.targets if t not in {p.name for p in parts}]
    tasks = [t for t in tasks if t in model.task_names]
    probs = predict_probabilities(model, split.loader, tasks, progress=progress, from_features=from_features)
    labels = split.labels
    locs = geolocate(probs, parts, hierarchy)
    out: dict = {"n": len(labels.img_id), "methods": {}}
    for name, g in locs.items():
        err = haversine_km(labels.lat, labels.lon, g.lat, g.lon)
        out["methods"][name] = summarize_errors(err, with_ci=with_ci).to_json_dict()
    best = "hierarchy" if "hierarchy" in locs else parts[-1].name
    out["best"] = best
    out["scene_accuracy"] = {
        t: float((probs[t].argmax(1) == labels.targets[t]).mean()) for t in tasks if t not in locs and t in probs
    }
    if predictions_csv is not None:
        g = locs[best]
        write_predictions(predictions_csv, labels.img_id, labels.lat, labels.lon, g.lat, g.lon,
                          extra={"fine_class": g.fine_class, "score": np.round(g.score, 6)})
    return out
