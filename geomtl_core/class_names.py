"""Names of the classes of every scene (auxiliary) head, taken from the data a model is trained on.

A dataset that declares names in its ``proxy.json`` (``label_names`` keyed by metadata column, e.g.
``S3_Label``) is named by them alone; a dataset that declares none (MP-16-style Places365 labels
``s3``, ``s16``, ``s365``) gets the Places365 names shipped with the package.
A task without known names gets none (outputs show class indices).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path

PROXY_MARKER = "proxy.json"
OVERHEAD_PROXY_CAUTION = (
    "caution: this model was trained on the overhead proxy dataset (300 km Blue Marble crops, book/proxy.md), "
    "not on ground-level photos; its guesses for ordinary photos are close to random"
)


@cache
def places365_names() -> dict[str, list[str]]:
    """``{"s3": [...3], "s16": [...16], "s365": [...365]}`` (Places365 categories and hierarchy, MIT)."""
    data = json.loads(resources.files("geomtl_core").joinpath("places365_names.json").read_text())
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
