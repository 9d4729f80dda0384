"""Scene labels: the Places365 hierarchy at three granularities (365 categories -> 16 -> 3), as
GeoEstimation derived them (365-way probabilities times the row-normalised hierarchy, then argmax),
and the class names a bundle records for each scene head.

Names come from the data a model is trained on: a dataset that declares names in its ``proxy.json``
(``label_names`` keyed by metadata column, e.g. ``S3_Label``) is named by them alone; a dataset that
declares none (MP-16-style Places365 labels ``s3``, ``s16``, ``s365``) gets the Places365 names
shipped with the package. A task without known names gets none (outputs show class indices).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True)
class SceneHierarchy:
    """Membership matrices of the 365 categories in the 3 level-1 and 16 level-2 classes."""

    categories: list[str]
    level1_names: list[str]
    level2_names: list[str]
    level1: np.ndarray  # (365, 3) 0/1
    level2: np.ndarray  # (365, 16) 0/1

    def probabilities(self, p365: ArrayLike, level: int) -> np.ndarray:
        """Coarse-level probabilities: ``p365 @ row_normalised(hierarchy)`` (rows sum to 1)."""
        h = self.level1 if level == 3 else self.level2 if level == 16 else None
        if h is None:
            raise ValueError(f"level must be 3 or 16, got {level}")
        h = h / h.sum(axis=1, keepdims=True)
        return np.asarray(p365, dtype=np.float64) @ h

    def labels(self, p365: ArrayLike, level: int) -> np.ndarray:
        """Argmax class at ``level`` (3 or 16) from 365-way probabilities."""
        return self.probabilities(p365, level).argmax(axis=-1)

    def labels_from_s365(self, s365: ArrayLike, level: int) -> np.ndarray:
        """Coarse labels from hard 365-way labels (one-hot probabilities; first class on ties)."""
        s = np.asarray(s365, dtype=np.int64)
        if s.size and (s.min() < 0 or s.max() >= len(self.categories)):
            bad = np.flatnonzero((s < 0) | (s >= len(self.categories)))
            raise ValueError(f"S365 labels out of range 0..{len(self.categories) - 1} at rows {bad[:10].tolist()}")
        return self.labels(np.eye(len(self.categories))[s], level)


def read_scene_hierarchy(path: str | Path) -> SceneHierarchy:
    """Read ``scene_hierarchy_places365.csv`` (two header lines, then 365 rows of 19 flags)."""
    path = Path(path)
    rows = list(csv.reader(path.open(newline="")))
    if len(rows) < 3 or rows[1][0] != "category":
        raise ValueError(f"{path}: expected two header lines, the second starting with 'category'")
    names = rows[1][1:]
    body = rows[2:]
    cats = [r[0].strip("'") for r in body]
    try:
        flags = np.array([[float(x) for x in r[1:]] for r in body])
    except ValueError as exc:
        raise ValueError(f"{path}: non-numeric flag in the hierarchy") from exc
    if flags.shape[1] != 19:
        raise ValueError(f"{path}: expected 3 + 16 flag columns, got {flags.shape[1]}")
    empty = np.flatnonzero(flags[:, :3].sum(1) == 0) if len(flags) else []
    if len(empty):
        raise ValueError(f"{path}: categories without a level-1 class: {[cats[i] for i in empty]}")
    return SceneHierarchy(cats, names[:3], names[3:], flags[:, :3], flags[:, 3:])


PROXY_MARKER = "proxy.json"
OVERHEAD_PROXY_CAUTION = (
    "caution: this model was trained on the overhead proxy dataset (100 km Blue Marble crops, book/proxy.md), "
    "not on ground-level photos; its guesses for ordinary photos are close to random"
)


@cache
def places365_names() -> dict[str, list[str]]:
    """``{"s3": [...3], "s16": [...16], "s365": [...365]}`` (Places365 categories and hierarchy, MIT)."""
    data = json.loads(resources.files("geomtl_core.data").joinpath("places365_names.json").read_text())
    return {k: v for k, v in data.items() if k.startswith("s")}


def dataset_label_names(root: str | Path) -> dict[str, list[str]]:
    """Class names a dataset folder declares (``proxy.json``'s ``label_names``), keyed by task name."""
    path = Path(root) / PROXY_MARKER
    if not path.exists():
        return {}
    names = json.loads(path.read_text()).get("label_names", {})
    return {col.removesuffix("_Label").lower(): list(v) for col, v in names.items()}


def class_names(tasks: dict[str, int], root: str | Path) -> dict[str, list[str]]:
    """Names of each task's classes (``tasks``: name -> number of classes) where the data or Places365
    defines exactly that many; tasks without names are left out."""
    declared = dataset_label_names(root)
    places = {} if declared else places365_names()
    out = {}
    for task, n in tasks.items():
        names = declared.get(task, places.get(task))
        if names is not None and len(names) == n:
            out[task] = names
    return out


def dataset_description(root: str | Path) -> dict[str, str]:
    """What a model was trained on: ``{"name", "kind"}``; ``kind`` is ``overhead_proxy`` for the
    embedded stand-in dataset, else ``photos``."""
    path = Path(root) / PROXY_MARKER
    if path.exists():
        return {"name": json.loads(path.read_text()).get("dataset", "geomtl proxy"), "kind": "overhead_proxy"}
    return {"name": str(Path(root).name), "kind": "photos"}
