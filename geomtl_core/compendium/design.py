"""The experiment that answers the project's question: does the scene task help geolocation with less data
and smaller models? A grid of (model, share of the training set, auxiliary label) cells, each trained with
the protocol's seeds under one training recipe chosen on validation (:mod:`geomtl_core.compendium.grid` runs
it), and the comparisons its verdict makes (:mod:`geomtl_core.compendium.verdict`). Nothing here trains.

Design (declared here, read by the notebooks and the book):

* partitionings are built once on the whole training split, whatever share a run trains on;
* every run takes the same number of optimiser steps (``samples_per_epoch`` = the training split's size),
  so a 10% run sees its images ten times as often instead of training ten times less;
* ``scene_all`` runs keep scene labels on every training image while geo labels stay on the share: each batch
  holds the single-task run's geo-labelled images of that step, in its order, plus as many images with the
  auxiliary label only (:class:`~geomtl_core.data.loaders.PairedBatchSampler`), so the row measures what the
  extra labels add, not a dilution of the geo labels;
* controls: the same auxiliary head trained on ``shuffled`` labels (regularisation alone) and on a
  ``geographic`` label of the same entropy (a region code: extra location supervision).
"""

from __future__ import annotations

from dataclasses import dataclass

from geomtl_core.compendium.scales import scale_params
from geomtl_core.config import deep_merge

RECIPES: dict[str, dict] = {
    # today's recipe before this grid: validation loss rose from the first epochs (heads overfit)
    "previous": {"model": {"dropout": 0.3}, "train": {"weight_decay": 1e-4, "label_smoothing": 0.0, "epochs": 6}},
    # regularised: dropout, decoupled weight decay and label smoothing, with three budgets
    "regularised_1ep": {"model": {"dropout": 0.5}, "train": {"weight_decay": 0.05, "label_smoothing": 0.1,
                                                             "epochs": 1}},
    "regularised_2ep": {"model": {"dropout": 0.5}, "train": {"weight_decay": 0.05, "label_smoothing": 0.1,
                                                             "epochs": 2}},
    "regularised_4ep": {"model": {"dropout": 0.5}, "train": {"weight_decay": 0.05, "label_smoothing": 0.1,
                                                             "epochs": 4}},
}
"""Candidate training recipes (overrides of the scale's base config); :func:`recipe` picks one on validation."""

PLANNED_RECIPE = "regularised_2ep"
"""The recipe a plan assumes before :func:`geomtl_core.compendium.grid.recipe` has recorded its choice."""

AUX: dict[str, dict] = {
    "st": {"data": {"scene_tasks": []}},
    "s3": {"data": {"scene_tasks": ["s3"]}},
    "s16": {"data": {"scene_tasks": ["s16"]}},
    "kg": {"data": {"scene_tasks": ["kg"]}},
    "shuffled_s3": {"data": {"scene_tasks": ["s3"], "aux_control": "shuffled"}},
    "shuffled_s16": {"data": {"scene_tasks": ["s16"], "aux_control": "shuffled"}},
    "geographic_s3": {"data": {"scene_tasks": ["s3"], "aux_control": "geographic"}},
    "geographic_s16": {"data": {"scene_tasks": ["s16"], "aux_control": "geographic"}},
}
"""Auxiliary label of a run: none (single-task), a scene grouping, Köppen, or a control of a scene grouping."""

ISN_TASK = "s3"
"""The scene grouping whose classes the individual scene networks (ISN) of the paper claims split the data by."""

LEGACY = {("frozen", 1.0, "st", ""): "st_hier", ("frozen", 1.0, "s3", ""): "mtl_s3",
          ("frozen", 1.0, "s16", ""): "mtl_s16", ("frozen", 1.0, "kg", ""): "mtl_kg"}
"""Grid cells that are also the book's named runs (trained once, under both names' notebooks)."""


@dataclass(frozen=True)
class Cell:
    """One run configuration of the grid (trained once per seed of the scale)."""

    model: str
    fraction: float
    aux: str
    variant: str = ""  # "" or "scene_all"

    @property
    def name(self) -> str:
        legacy = LEGACY.get((self.model, self.fraction, self.aux, self.variant))
        if legacy:
            return legacy
        tag = f"-{self.variant}" if self.variant else ""
        return f"{self.model}-f{round(100 * self.fraction):03d}-{self.aux}{tag}"


def model_label(model: str, scale: str) -> str:
    """Readable name of a grid model at a scale."""
    p = scale_params(scale)
    if model == "frozen":
        return f"{p['backbone']} ({'ImageNet' if p['pretrained'] else 'random'}), frozen"
    if model == "tuned":
        return f"efficientnet_lite0 (ImageNet), last {p['grid']['tune_blocks']} blocks tuned"
    if model.startswith("cnn_w"):
        return f"small CNN ×{_width(model)} from scratch"
    raise KeyError(model)


def _width(model: str) -> float:
    """``cnn_w25`` -> 0.25: the small CNN's width multiplier."""
    return int(model.removeprefix("cnn_w")) / 100


def model_overrides(model: str, scale: str) -> dict:
    """Config overrides of a grid model (``frozen``: the scale's backbone, heads on cached features)."""
    p = scale_params(scale)
    if model == "frozen":
        return {}
    if model == "tuned":
        return {"model": {"backbone": "efficientnet_lite0", "pretrained": True, "freeze_backbone": False,
                          "finetune_blocks": p["grid"]["tune_blocks"]}}
    if model.startswith("cnn_w"):
        return {"model": {"backbone": "small_cnn", "width": _width(model), "pretrained": False,
                          "freeze_backbone": False, "conv_padding": "same_symmetric"},  # torch's padding: faster
                "train": {"epochs": p["scratch_epochs"]}}
    raise KeyError(f"unknown grid model {model!r}")


def cells(scale: str) -> list[Cell]:
    """The grid of a scale (``SCALES[scale]["grid"]``): the auxiliary labels of every model and share, the
    ``scene_all`` variant, the controls and Köppen where the scale declares them."""
    g = scale_params(scale)["grid"]
    out = []
    for model, shares in g["models"].items():
        for f, labels in shares.items():
            out += [Cell(model, f, a) for a in labels]
    out += [Cell(m, f, "s3", "scene_all") for m, f in g["scene_all"]]
    out += [Cell(m, f, a) for m, f in g["controls"] for a in g["control_labels"]]
    out += [Cell(m, f, "kg") for m, f in g["koppen"]]
    out += [Cell(m, f, a, "scene_all") for m, f, a in g.get("region_on_all", [])]
    return list(dict.fromkeys(out))


def cv_folds(scale: str, name: str) -> list[int] | None:
    """The cross-validation folds an experiment trains on (``SCALES[scale]["cv"]``): the declared cells' runs
    train on every listed fold, all others on the scale's split only (``None``)."""
    cv = scale_params(scale).get("cv")
    if not cv:
        return None
    return list(cv["folds"]) if name in {Cell(*c).name for c in cv["cells"]} else None


def cv_cells(scale: str) -> list[Cell]:
    """The cells the scale cross-validates (``SCALES[scale]["cv"]["cells"]``)."""
    return [Cell(*c) for c in (scale_params(scale).get("cv") or {}).get("cells", [])]


def retrieval_cells(scale: str) -> list[Cell]:
    """The cells whose test also scores the hybrid and kNN predictors (``SCALES[scale]["retrieval"]``)."""
    return [Cell(*c) for c in scale_params(scale).get("retrieval", [])]


def retrieval_overrides(scale: str, name: str) -> dict:
    """``train.retrieval`` on for an experiment named as one of :func:`retrieval_cells` (the same run whether a
    notebook asks for it by its legacy name or the grid by its cell), else nothing."""
    return {"train": {"retrieval": True}} if name in {c.name for c in retrieval_cells(scale)} else {}


def cell_overrides(cell: Cell, scale: str) -> dict:
    """Config overrides of a grid cell (model, share, auxiliary label, variant)."""
    over = deep_merge(model_overrides(cell.model, scale), AUX[cell.aux])
    over = deep_merge(over, {"data": {"train_fraction": cell.fraction}})
    if cell.variant == "scene_all":
        over = deep_merge(over, {"data": {"scene_on_all": True}})
    return over


FAMILIES = {
    "primary": "multi-task against single-task with the 3-class scene label, one row per model and share",
    "positive_control": "effects the design must see: single-task on all training images against the smallest "
                        "share, and a region code on every training image while geo labels stay on the share",
    "secondary": "the S16 scene label (the 17 IGBP land-cover classes), and the scene task on all images with geo "
                 "labels on a share",
    "controls": "the scene head against shuffled and geographic labels of equal entropy, and Köppen",
}
"""The verdict's declared families (Holm within each), in the order the book shows them."""


METHODS_FAMILY = ("methods", "the hybrid against f* and against plain kNN within each retrieval cell's runs, kNN "
                  "against f*, and the scene task's effect on the hybrid and on kNN in each model and share")
"""The family (name, what it holds) of ``results/<scale>/methods.csv``: its own Holm family, beside the verdict's."""


def method_comparisons(scale: str) -> list[tuple[str, Cell, str, Cell, str]]:
    """(comparison, a, a's method, b, b's method) rows of ``methods.csv``, b − a; ``"fstar"`` stands for a run's
    own best method (f*). Within every retrieval cell: hybrid − f*, hybrid − kNN, kNN − f*; between the cells
    with and without the scene task (3 classes) of one model and share: hybrid − hybrid and kNN − kNN (the scene
    task reaches kNN through the embedding: the neck's, or the tuned blocks'; where both runs chose the frozen
    backbone's features the kNN row is 0 by construction, and says so)."""
    cells_ = retrieval_cells(scale)
    rows = []
    for c in sorted(cells_, key=lambda c: (c.model, c.fraction, c.aux, c.variant)):
        rows += [("hybrid_vs_fstar", c, "fstar", c, "hybrid"), ("hybrid_vs_knn", c, "knn", c, "hybrid"),
                 ("knn_vs_fstar", c, "fstar", c, "knn")]
    for c in sorted(cells_, key=lambda c: (c.model, c.fraction)):
        st = Cell(c.model, c.fraction, "st")
        if c.aux == "s3" and not c.variant and st in cells_:
            rows += [("mtl_vs_st_hybrid", st, "hybrid", c, "hybrid"), ("mtl_vs_st_knn", st, "knn", c, "knn")]
    return rows


def family(label: str, b: Cell) -> str:
    """The family of a verdict row (:data:`FAMILIES`)."""
    if label == "mtl_vs_st":
        return "primary" if b.aux == "s3" else "secondary"
    if label == "mtl_scene_on_all_vs_st":
        return "secondary"
    if label in ("data_share_vs_smallest_share", "region_code_on_all_vs_st"):
        return "positive_control"
    return "controls"


def comparisons(scale: str) -> list[tuple[str, Cell, Cell]]:
    """(comparison, a, b) rows of the verdict, b − a: multi-task against single-task in every cell, the
    scene_all variant against single-task, scene against its shuffled and geographic controls, each control
    against single-task, Köppen (a geographic label) against single-task, and the positive controls (single-task
    on the largest share against the smallest, per model; a region code on every image against single-task)."""
    grid = set(cells(scale))
    rows = []
    for c in sorted(grid, key=lambda c: (c.model, c.fraction, c.aux, c.variant)):
        st = Cell(c.model, c.fraction, "st")
        if st not in grid or c.aux == "st":
            continue
        if c.aux in ("s3", "s16") and not c.variant:
            rows.append(("mtl_vs_st", st, c))
        elif c.variant == "scene_all":
            rows.append(("region_code_on_all_vs_st" if c.aux.startswith("geographic") else "mtl_scene_on_all_vs_st",
                         st, c))
        elif c.aux == "kg":
            rows.append(("koppen_geographic_label_vs_st", st, c))
        else:
            kind, label = c.aux.split("_")
            rows.append((f"{kind}_control_vs_st", st, c))
            scene = Cell(c.model, c.fraction, label)
            if scene in grid:
                rows.append((f"mtl_vs_{kind}_control", c, scene))
    for model in sorted({c.model for c in grid}):
        shares = sorted(c.fraction for c in grid if c.model == model and c.aux == "st" and not c.variant)
        if len(shares) > 1:
            rows.append(("data_share_vs_smallest_share", Cell(model, shares[0], "st"), Cell(model, shares[-1], "st")))
    return rows


PILOT = {"var_seed": 0.35 * 6.4, "var_seed_block": 0.45 * 6.4, "var_block": 0.20 * 6.4, "n_primary_rows": 6,
         "source": "default run at 5a149bb (2026-11-27/12-03), one test split of 8,080 images: one seed's "
                   "multi-task minus single-task difference at 200 km (frozen, 100%) has variance 6.4 points², "
                   "35% a global seed effect, 45% seed × block, 20% between blocks (issue 23)"}
"""The pilot variance components (points²) the power plan projects from, measured before this design."""

TARGETS = {"half_width": 1.5, "mde": 3.0}
"""What the design must reach on a primary row (points at 200 km): a 95% interval no wider than ±1.5 and an
mde at the row's Holm level no larger than 3 (issue 23)."""


def power_plan(seeds: tuple[int, ...] = (3, 4, 5), folds: tuple[int, ...] = tuple(range(1, 11))) -> list[dict]:
    """Projected 95% half-width and mde (at Holm's smallest level in the primary family, alpha / m) of every
    (seeds, folds) design from :data:`PILOT`, cheapest first (runs per arm = seeds × folds); ``meets``: both
    :data:`TARGETS` reached. The scale's ``cv`` is the cheapest design that meets them."""
    from statistics import NormalDist

    from geomtl_core.geo.protocol import ALPHA, minimum_detectable_effect, planned_se

    z = NormalDist().inv_cdf(0.975)
    out = []
    for s in seeds:
        for f in folds:
            se = planned_se(PILOT["var_seed"], PILOT["var_seed_block"], PILOT["var_block"], s, f)
            mde = minimum_detectable_effect(se, ALPHA / PILOT["n_primary_rows"])
            out.append({"seeds": s, "folds": f, "runs_per_arm": s * f, "se": se, "half_width": z * se, "mde": mde,
                        "meets": z * se <= TARGETS["half_width"] and mde <= TARGETS["mde"]})
    return sorted(out, key=lambda r: (r["runs_per_arm"], r["half_width"]))
