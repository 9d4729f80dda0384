"""The experiment that answers the project's question: does the scene task help geolocation with less data
and smaller models? A grid of (model, share of the training set, auxiliary label) cells, each trained with
the protocol's seeds under one training recipe chosen on validation, and its verdict file.

Design (declared here, read by the notebooks and the book):

* partitionings are built once on the whole training split, whatever share a run trains on;
* every run takes the same number of optimiser steps (``samples_per_epoch`` = the training split's size),
  so a 10% run sees its images ten times as often instead of training ten times less;
* ``scene_all`` runs keep scene labels on every training image while geo labels stay on the share: with the
  same steps, a share f of each batch carries geo labels, where the single-task run at share f sees its geo
  labels 1/f times per epoch (more scene supervision, less geo supervision per step: read the row as such);
* controls: the same auxiliary head trained on ``shuffled`` labels (regularisation alone) and on a
  ``geographic`` label of the same entropy (a region code: extra location supervision).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from geomtl_core.compendium import experiments as E
from geomtl_core.compendium.runner import find_root
from geomtl_core.compendium.scales import scale_params
from geomtl_core.config import deep_merge

import numpy as np
import pandas as pd

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
    return list(dict.fromkeys(out))


def steps_budget(scale: str, root: Path | None = None) -> int:
    """Samples per epoch of every grid run: the size of the training split (equal steps for any share)."""
    from geomtl_core.data.loaders import load_meta

    return len(load_meta(E.experiment_config(scale, root=root), "train"))


def recipe(scale: str, root: Path | None = None) -> dict:
    """The training recipe of the scale: each of :data:`RECIPES` trains the single-task three-partitioning model
    once (first seed), and the one with the best validation accuracy at the primary distance (f*) wins.
    Written to ``results/<scale>/recipe/chosen.json``; returns its overrides."""
    from geomtl_core.compendium.report import PRIMARY_KM

    root = find_root() if root is None else Path(root)
    seed = scale_params(scale)["seeds"][0]
    table = {}
    for name, over in RECIPES.items():
        r = E.run_once(f"recipe/{name}", scale, deep_merge(over, {"train": {"seed": seed}}), root, 0)
        table[name] = {"val_acc": r["val"]["methods"][r["val"]["best"]][f"acc_{PRIMARY_KM}km"],
                       "train_time_s": r["train_time_s"], "overrides": over}
    chosen = max(table, key=lambda n: table[n]["val_acc"])
    out = {"chosen": chosen, "endpoint_km": PRIMARY_KM, "candidates": table}
    (root / "results" / scale / "recipe" / "chosen.json").write_text(json.dumps(out, indent=2))
    return RECIPES[chosen]


def run_named(name: str, scale: str, overrides: dict | None = None, root: Path | None = None) -> dict:
    """:func:`experiments.run` under the scale's chosen recipe and the grid's equal step budget."""
    base = deep_merge(recipe(scale, root), {"train": {"samples_per_epoch": steps_budget(scale, root)}})
    return E.run(name, scale, deep_merge(base, overrides or {}), root=root)


def cell_overrides(cell: Cell, scale: str) -> dict:
    """Config overrides of a grid cell (model, share, auxiliary label, variant)."""
    over = deep_merge(model_overrides(cell.model, scale), AUX[cell.aux])
    over = deep_merge(over, {"data": {"train_fraction": cell.fraction}})
    if cell.variant == "scene_all":
        over = deep_merge(over, {"data": {"scene_on_all": True}})
    return over


def run_cell(cell: Cell, scale: str, root: Path | None = None) -> dict:
    """Train (or reuse) one grid cell over the scale's seeds."""
    return run_named(cell.name, scale, cell_overrides(cell, scale), root)


def run_grid(scale: str, root: Path | None = None) -> dict[Cell, dict]:
    """Every cell of the scale's grid, trained (or reused)."""
    from tqdm.auto import tqdm

    todo = cells(scale)
    return {c: run_cell(c, scale, root) for c in tqdm(todo, desc="grid", leave=False)}


VERDICT_COLUMNS = ["comparison", "model", "data_fraction", "aux_label", "endpoint", "a_mean", "b_mean", "diff",
                   "ci_lo", "ci_hi", "p_holm", "n_seeds", "n_blocks"]


def comparisons(scale: str) -> list[tuple[str, Cell, Cell]]:
    """(comparison, a, b) rows of the verdict, b − a: multi-task against single-task in every cell, the
    scene_all variant against single-task, scene against its shuffled and geographic controls, each control
    against single-task, and Köppen (a geographic label) against single-task."""
    grid = set(cells(scale))
    rows = []
    for c in sorted(grid, key=lambda c: (c.model, c.fraction, c.aux, c.variant)):
        st = Cell(c.model, c.fraction, "st")
        if st not in grid or c.aux == "st":
            continue
        if c.aux in ("s3", "s16") and not c.variant:
            rows.append(("mtl_vs_st", st, c))
        elif c.variant == "scene_all":
            rows.append(("mtl_scene_on_all_vs_st", st, c))
        elif c.aux == "kg":
            rows.append(("koppen_geographic_label_vs_st", st, c))
        else:
            kind, label = c.aux.split("_")
            rows.append((f"{kind}_control_vs_st", st, c))
            scene = Cell(c.model, c.fraction, label)
            if scene in grid:
                rows.append((f"mtl_vs_{kind}_control", c, scene))
    return rows


def verdict(scale: str, root: Path | None = None, n_boot: int = 2000) -> pd.DataFrame:
    """The verdict table (columns :data:`VERDICT_COLUMNS`, then the run names and a verdict word), Holm over
    all rows; written to ``results/<scale>/verdict.csv``."""
    from geomtl_core.compendium.report import PRIMARY_KM, compare_runs
    from geomtl_core.geo.stats import holm

    root = find_root() if root is None else Path(root)
    rows = []
    for label, a, b in comparisons(scale):
        seeds = {c.name: len(json.loads((root / "results" / scale / f"{c.name}.json").read_text())["seeds"])
                 for c in (a, b)}
        if len(set(seeds.values())) > 1:  # the means and the paired difference must stand on the same seeds
            raise ValueError(f"{label}: runs with different numbers of seeds {seeds}; rerun the missing seeds")
        d = compare_runs(scale, a.name, b.name, root, n_boot=n_boot).loc[f"{PRIMARY_KM} km"]
        means = {c: _mean_acc(scale, c.name, root) for c in (a, b)}
        rows.append({"comparison": label, "model": b.model, "data_fraction": b.fraction, "aux_label": b.aux,
                     "endpoint": f"acc_{PRIMARY_KM}km", "a_mean": 100 * means[a], "b_mean": 100 * means[b],
                     "diff": float(d["difference (points)"]), "ci_lo": float(d["ci95 low"]),
                     "ci_hi": float(d["ci95 high"]), "p": float(d["p"]), "n_seeds": int(d["n_seeds"]),
                     "n_blocks": int(d["n_blocks"]), "a_run": a.name, "b_run": b.name})
    table = pd.DataFrame(rows)
    table["p_holm"] = holm(table["p"].to_numpy())
    table["verdict"] = [verdict_word(r) for _, r in table.iterrows()]
    table = table[[*VERDICT_COLUMNS, "a_run", "b_run", "verdict"]].round(4)
    table.to_csv(root / "results" / scale / "verdict.csv", index=False)
    return table


def verdict_word(row) -> str:
    """supported (b better, CI above 0 and Holm p < 0.05), contradicted (b worse, likewise), or not resolved."""
    if row["ci_lo"] > 0 and row["p_holm"] < 0.05:
        return "supported"
    if row["ci_hi"] < 0 and row["p_holm"] < 0.05:
        return "contradicted"
    return "not resolved"


def _mean_acc(scale: str, name: str, root: Path) -> float:
    """Accuracy at the primary distance, mean over the run's seeds."""
    from geomtl_core.compendium.report import PRIMARY_KM

    r = json.loads((root / "results" / scale / f"{name}.json").read_text())
    return float(r["seed_summary"][f"acc_{PRIMARY_KM}km"]["mean"])


SUBJECT = {
    "mtl_vs_st": "the {aux} scene task against geolocation alone",
    "mtl_scene_on_all_vs_st": "the {aux} scene task on all images (geo labels on the share only, so fewer geo "
                              "labels per step than the single-task run) against geolocation alone",
    "shuffled_control_vs_st": "an auxiliary head on shuffled {aux} labels against geolocation alone",
    "geographic_control_vs_st": "an auxiliary geographic region code ({aux}) against geolocation alone",
    "mtl_vs_shuffled_control": "the real scene labels against the same head on shuffled labels ({aux})",
    "mtl_vs_geographic_control": "the scene labels against a geographic label of equal entropy ({aux})",
    "koppen_geographic_label_vs_st": "Köppen climate (a geographic label) against geolocation alone",
}


def conclusions(table: pd.DataFrame, scale: str) -> str:
    """The summary's answer, generated from a verdict table: one line per row (grouped by model) and a
    closing count of supported, contradicted and unresolved comparisons."""
    if table.empty:
        return "No comparison has run yet at this scale."
    lines = []
    for model, rows in table.groupby("model", sort=False):
        lines.append(f"**{model_label(model, scale)}**")
        for _, r in rows.sort_values(["comparison", "data_fraction"]).iterrows():
            what = SUBJECT.get(r["comparison"], r["comparison"]).format(aux=r["aux_label"])
            lines.append(f"- {round(100 * r['data_fraction'])}% of the training images, {what}: "
                         f"{r['diff']:+.2f} points [{r['ci_lo']:+.2f}, {r['ci_hi']:+.2f}], Holm p = "
                         f"{r['p_holm']:.3f} → **{r['verdict']}**")
        lines.append("")
    n = table["verdict"].value_counts()
    seeds, blocks = int(table["n_seeds"].min()), int(table["n_blocks"].min())
    lines.append(f"Of {len(table)} comparisons ({seeds} seeds and {blocks} spatial blocks each at least), "
                 f"{n.get('supported', 0)} are supported, {n.get('contradicted', 0)} contradicted and "
                 f"{n.get('not resolved', 0)} not resolved at this power.")
    return "\n".join(lines)


def answer(table: pd.DataFrame) -> str:
    """One paragraph: does the scene task help with less data and smaller models, by the verdict rows."""
    if table.empty:
        return "Not answered: no verdict at this scale yet."
    mtl = table[table["comparison"] == "mtl_vs_st"]
    ctrl = table[table["comparison"].isin(["mtl_vs_shuffled_control", "mtl_vs_geographic_control"])]
    if mtl.empty:
        return "Not answered: the verdict has no multi-task against single-task row yet."
    small = mtl[mtl["data_fraction"] == mtl["data_fraction"].min()]

    def tally(t: pd.DataFrame) -> str:
        c = t["verdict"].value_counts()
        return (f"{c.get('supported', 0)} supported, {c.get('contradicted', 0)} contradicted, "
                f"{c.get('not resolved', 0)} not resolved of {len(t)}")

    best = mtl.loc[mtl["diff"].idxmax()] if len(mtl) else None
    worst = mtl.loc[mtl["diff"].idxmin()] if len(mtl) else None
    text = (f"Multi-task against single-task, every model and share: {tally(mtl)}. "
            f"At the smallest share ({round(100 * small['data_fraction'].min())}%): {tally(small)}. ")
    if best is not None:
        text += (f"The differences range from {worst['diff']:+.2f} to {best['diff']:+.2f} points, accuracy "
                 f"within {table['endpoint'].iloc[0].removeprefix('acc_').removesuffix('km')} km. ")
    text += f"Scene labels against the controls (shuffled, geographic): {tally(ctrl)}."
    return text


def grid_table(scale: str, root: Path | None = None) -> pd.DataFrame:
    """Mean accuracy (%) at the primary distance over seeds, per model × share (rows) and auxiliary label."""
    root = find_root() if root is None else Path(root)
    rows = []
    for c in cells(scale):
        path = root / "results" / scale / f"{c.name}.json"
        if path.exists():
            rows.append({"model": c.model, "train share": c.fraction,
                         "aux": c.aux + (f" ({c.variant})" if c.variant else ""),
                         "acc": round(100 * _mean_acc(scale, c.name, root), 2)})
    t = pd.DataFrame(rows)
    if t.empty:
        return t
    return t.pivot_table(index=["model", "train share"], columns="aux", values="acc").map(
        lambda v: "—" if pd.isna(v) else f"{v:.1f}")


def intervals_contain_diff(table: pd.DataFrame) -> bool:
    """Every verdict row has finite numbers and an interval containing its difference."""
    num = table[["diff", "ci_lo", "ci_hi"]].to_numpy(float)
    return bool(np.isfinite(num).all() and ((num[:, 1] <= num[:, 0]) & (num[:, 0] <= num[:, 2])).all())


def recipe_table(scale: str, root: Path | None = None) -> pd.DataFrame:
    """The recipe candidates as trained by :func:`recipe`: validation accuracy, budget and regularisation."""
    root = find_root() if root is None else Path(root)
    rec = json.loads((root / "results" / scale / "recipe" / "chosen.json").read_text())
    rows = []
    for name, c in rec["candidates"].items():
        o = deep_merge({"model": {}, "train": {}}, c["overrides"])
        rows.append({"recipe": name, "chosen": name == rec["chosen"], "epochs": o["train"].get("epochs"),
                     "dropout": o["model"].get("dropout"), "weight decay": o["train"].get("weight_decay"),
                     "label smoothing": o["train"].get("label_smoothing"),
                     f"val acc {rec['endpoint_km']} km %": round(100 * c["val_acc"], 2),
                     "train time (s)": c["train_time_s"]})
    return pd.DataFrame(rows).set_index("recipe")


def verdict_display(table: pd.DataFrame) -> pd.DataFrame:
    """The verdict table as the book shows it: one compact row per comparison, numbers formatted."""
    rows = [{"comparison": r["comparison"], "model": r["model"], "share": f"{round(100 * r['data_fraction'])}%",
             "aux": r["aux_label"], "a %": f"{r['a_mean']:.1f}", "b %": f"{r['b_mean']:.1f}",
             "b − a [95% CI]": f"{r['diff']:+.2f} [{r['ci_lo']:+.2f}, {r['ci_hi']:+.2f}]",
             "Holm p": f"{r['p_holm']:.2f}", "verdict": r["verdict"]} for _, r in table.iterrows()]
    return pd.DataFrame(rows).set_index("comparison")
