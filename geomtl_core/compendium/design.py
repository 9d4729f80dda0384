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

from geomtl_core.compendium.scales import SCALES, scale_params
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
                # its images decoded once a run and augmented by the batch, at the scale's own input size for
                # models from scratch (``scratch_size``, else ``size``): the export's crops, resized
                "data": {"decode_once": True, "image_size": p.get("scratch_size") or p["size"]},
                # ``scratch_validate``: False skips the validation pass after every epoch (history.csv keeps the
                # training losses; validation is still scored once, after training, for the run's methods)
                "train": {"epochs": p["scratch_epochs"], "validate": p.get("scratch_validate", True)}}
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
    train on every listed fold (their model's own list, ``cv.model_folds``, where the design gives a noisier
    model more folds), all others on the scale's split only (``None``)."""
    cv = scale_params(scale).get("cv")
    if not cv:
        return None
    cell = next((Cell(*c) for c in cv["cells"] if Cell(*c).name == name), None)
    if cell is None:
        return None
    return list(cv.get("model_folds", {}).get(cell.model, cv["folds"]))


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
    "confirmatory": "multi-task against single-task with the 3-class scene label at the rows the scale declares "
                    "before its numbers (book/method.md, \"The confirmatory design\"): Holm over these rows only",
    "positive_control": "effects the design must see: single-task on all training images against the smallest "
                        "share, and a region code on every training image while geo labels stay on the share",
    "secondary": "multi-task against single-task in the other models and shares, the S16 scene label (the 17 IGBP "
                 "land-cover classes), and the scene task on all images with geo labels on a share",
    "controls": "the scene head against shuffled and geographic labels of equal entropy, and Köppen",
}
"""The verdict's declared families (Holm within each), in the order the book shows them. Only the first is
confirmatory; every other row (and every row of ``methods.csv`` and the paper claims) is exploratory: it carries
its own interval and mde and answers nothing on its own."""

CONFIRMATORY = "confirmatory"
"""The one family that answers the question; :func:`role` labels every other row exploratory."""


def role(family_name: str) -> str:
    """``confirmatory`` for a row of the confirmatory family, ``exploratory`` for any other."""
    return "confirmatory" if family_name == CONFIRMATORY else "exploratory"


def confirmatory_cells(scale: str) -> list[Cell]:
    """The multi-task cells (3-class scene label) whose row against single-task is confirmatory
    (``SCALES[scale]["confirmatory"]``: model and share)."""
    return [Cell(m, f, "s3") for m, f in scale_params(scale).get("confirmatory", [])]


def aa_cell(scale: str) -> Cell | None:
    """The cross-validated single-task cell that runs extra seeds for the A/A calibration
    (``SCALES[scale]["cv"]["aa"]``), or None."""
    aa = (scale_params(scale).get("cv") or {}).get("aa")
    return Cell(*aa["cell"]) if aa else None


def experiment_seeds(scale: str, name: str) -> list[int]:
    """The seeds an experiment trains with: the scale's, the A/A cell's own (``cv.aa.seeds``), or those the
    design gives a cross-validated cell's model (``cv.model_seeds``: a noisier row's seeds on every fold)."""
    p, aa = scale_params(scale), aa_cell(scale)
    if aa and name == aa.name:
        return list(p["cv"]["aa"]["seeds"])
    cell = next((c for c in cv_cells(scale) if c.name == name), None)
    by_model = (p.get("cv") or {}).get("model_seeds", {})
    if cell is not None and cell.model in by_model:
        return list(by_model[cell.model])
    return list(p.get("seeds", [0]))


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


def family(label: str, b: Cell, scale: str | None = None) -> str:
    """The family of a verdict row (:data:`FAMILIES`): a multi-task row with the 3-class scene label is
    confirmatory where ``scale`` declares it (:func:`confirmatory_cells`; every such row when ``scale`` is not a
    named scale), else secondary."""
    if label == "mtl_vs_st":
        if b.aux == "s3" and (scale not in SCALES or b in confirmatory_cells(scale)):
            return CONFIRMATORY
        return "secondary"
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


PILOT = {"frozen": {"within": 0.95, "between": 0.50}, "learning": {"within": 9.85, "between": 5.63},
         # the small CNN's variance pilot on pixel-disjoint-v1 (2026-12-06, `python -m geomtl_core.compendium.pilot
         # --size 32 --epochs 3 --seeds 0 1`, folds 0 1 2 then 3 4 5, pooled: `pilot.pooled`): 32 px, 3 epochs,
         # decoded once a run, at 750 km; the first batch alone read 5.11 within and 0.0 between
         "cnn": {"within": 12.85, "between": 0.0},
         "source": "the default scale's first cross-validated measurement (3 seeds x 6 folds, commit a73b492, the "
                   "overlapping benchmark before pixel-disjoint-v1): per-run multi-task minus single-task differences "
                   "at 200 km, the endpoint then (points^2), seed to seed within a fold and between folds; frozen: "
                   "the frozen row at 100%; learning: the tuned row at 100%, the only learning-backbone row measured "
                   "on folds"}
"""The pilot (declared as one: it sets the allocation, never the hypotheses): variance components of one run's
difference, which :func:`power_plan` projects to designs. Measured on the previous benchmark, before this design."""

TARGETS = {"mde": 2.0, "aim": 1.5}
"""What a confirmatory row must reach (points at the primary endpoint): an mde at the family's strictest Holm
level (alpha / m) no larger than 2.0, aiming for 1.5 (issue 35)."""

MAX_FOLDS = 9
"""Folds a row can be cross-validated on: 10, less fold 8 (its test cells are the export's validation cells)."""


def projection(within: float, between: float, seeds: int, folds: int, m: int, margin: float | None = None) -> dict:
    """A design's projected fold-level standard error (points), 95% half-width and mde at Holm's strictest level
    (alpha / ``m``, t with folds − 1 degrees of freedom), and its chance of the word "equivalent" when the true
    effect is 0 (the 95% interval inside ±``margin``, normal approximation of the estimate).

    >>> r = projection(0.95, 0.50, seeds=1, folds=7, m=3)
    >>> round(r["se"], 3), round(r["mde"], 2), r["p_equivalent"]
    (0.455, 1.91, 0.0)
    """
    from statistics import NormalDist

    from geomtl_core.geo.protocol import ALPHA, EQUIV_MARGIN, minimum_detectable_effect, planned_se

    from scipy.stats import t

    margin = EQUIV_MARGIN if margin is None else margin
    se = planned_se(within, 0.0, between, seeds, folds)  # seeds average the within-fold part, folds all
    half = float(t.ppf(0.975, folds - 1)) * se
    p_eq = max(0.0, 2 * NormalDist().cdf((margin - half) / se) - 1) if margin > half else 0.0
    return {"seeds": seeds, "folds": folds, "runs_per_arm": seeds * folds, "se": se, "half_width": half,
            "mde": minimum_detectable_effect(se, ALPHA / m, df=folds - 1), "p_equivalent": p_eq}


def power_plan(pilot: str = "frozen", m: int = 3, seeds: tuple[int, ...] = (1, 2, 3, 4, 5),
               folds: tuple[int, ...] = tuple(range(2, MAX_FOLDS + 1))) -> list[dict]:
    """Every (seeds, folds) design projected from a :data:`PILOT` row for a confirmatory family of ``m`` rows,
    cheapest first (runs per arm = seeds × folds, then the smaller mde); ``meets``: mde ≤ ``TARGETS["mde"]``."""
    c = PILOT[pilot]
    out = [projection(c["within"], c["between"], s, f, m) for s in seeds for f in folds]
    for r in out:
        r["meets"] = r["mde"] <= TARGETS["mde"]
    return sorted(out, key=lambda r: (r["runs_per_arm"], r["mde"]))
