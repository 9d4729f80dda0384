"""The plan of a scale, before anything trains (``runner --dry-run``): every training run the book asks for, stage
by stage (the recipe's candidates, each learning arm's candidates, the grid's cells over seeds and folds, the
named runs of chapters 04 and 06), whether the run cache already holds it, and an estimated time from measured
per-epoch costs. Where a validation choice is not made yet, the later runs are planned with the scale's declared
settings and marked provisional: their number is exact, their keys and times are estimates."""

from __future__ import annotations

import json
from pathlib import Path

from geomtl_core.compendium import grid
from geomtl_core.compendium import runs as R
from geomtl_core.compendium.design import AUX, RECIPES, cell_overrides, cells, cv_folds
from geomtl_core.compendium.project import find_root
from geomtl_core.compendium.results import results_dir
from geomtl_core.compendium.scales import scale_params
from geomtl_core.config import deep_merge

import pandas as pd

COST_S = {"frozen": (15.0, 12.0), "tuned": (50.0, 14.0), "cnn": (38.0, 14.0)}
"""Seconds per epoch over the default scale's 63K training images, and per run for the rest (evaluation, setup),
measured on this project's 2-core CPU (AMD EPYC, no GPU; default runs of 2026-12-03): heads on cached features,
EfficientNet-Lite0 with two blocks tuned on cached activations, small CNN from scratch. Scaled by samples per
epoch and, where images are read, by pixels; a scale's own finished runs replace them (their median)."""


def _kind(overrides: dict) -> str:
    model = overrides.get("model", {})
    if model.get("backbone") == "small_cnn":
        return "cnn"
    return "tuned" if model.get("finetune_blocks") else "frozen"


def _chosen(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _estimate(unit: R.RunUnit, scale: str, default_samples: int, measured: dict[str, float]) -> float:
    """Seconds one run should take: the scale's measured median per epoch of its kind, else :data:`COST_S`."""
    p = scale_params(scale)
    cfg = R.experiment_config(scale, {"name": unit.name, **unit.overrides})
    kind = _kind(unit.overrides)
    per_epoch, overhead = COST_S[kind]
    if kind in measured:
        per_epoch = measured[kind]
    else:
        samples = cfg.train.samples_per_epoch or default_samples
        per_epoch *= samples / 62_887 * ((p["size"] / 64) ** 2 if kind != "frozen" else 1.0)
    return overhead + per_epoch * cfg.train.epochs


def _measured(scale: str, root: Path) -> dict[str, float]:
    """Median seconds per epoch by kind of model over the scale's finished runs."""
    rows = []
    for f in results_dir(scale, root).rglob("*.json"):
        r = json.loads(f.read_text())
        if "train_time_s" in r and "config" in r and r.get("wall_time_s"):
            rows.append({"kind": _kind(r["config"]), "s": r["train_time_s"] / r["config"]["train"]["epochs"]})
    return pd.DataFrame(rows).groupby("kind")["s"].median().to_dict() if rows else {}


def plan(scale: str, root: Path | None = None) -> pd.DataFrame:
    """One row per training run of the scale's book: stage, run, kind, epochs, seed, fold, cached, provisional
    (planned before a validation choice it depends on), estimated seconds. Nothing trains."""
    root = find_root() if root is None else Path(root)
    R.ensure_proxy(scale, root, progress=False)
    p = scale_params(scale)
    budget = grid.steps_budget(scale, root)
    seed = p["seeds"][0]
    rows: list[tuple[str, R.RunUnit, bool]] = []
    for name, over in RECIPES.items():
        rows.append(("recipe", R.RunUnit(f"recipe/{name}", scale, deep_merge(over, {"train": {"seed": seed}}),
                                         "recipe", seed), False))
    chosen = _chosen(results_dir(scale, root) / "recipe" / "chosen.json")
    recipe = RECIPES[chosen["chosen"]] if chosen else RECIPES["regularised_2ep"]
    provisional = chosen is None
    alt = deep_merge(deep_merge(recipe, grid.partitions(scale)["alternative"]), {"train": {"seed": seed}})
    name = f"recipe/{chosen['chosen'] if chosen else 'regularised_2ep'}-alternative_partition"
    rows.append(("recipe", R.RunUnit(name, scale, alt, "recipe", seed), provisional))
    if chosen and chosen["partition"] != "scale":
        recipe = deep_merge(recipe, grid.partitions(scale)["alternative"])
    base = deep_merge(recipe, {"train": {"samples_per_epoch": budget}})
    for c in cells(scale):
        arm = {}
        candidates = grid.arm_candidates(c, scale, root)
        for name, over in candidates.items():
            rows.append(("arms", R.RunUnit(f"arms/{name}", scale, deep_merge(deep_merge(deep_merge(
                base, cell_overrides(c, scale)), over), {"train": {"seed": seed}}), c.name, seed), provisional))
        if candidates:
            choice = _chosen(results_dir(scale, root) / "arms" / f"{c.name}.chosen.json")
            arm = candidates[choice["chosen"]] if choice else next(iter(candidates.values()))
        over = deep_merge(base, deep_merge(cell_overrides(c, scale), arm))
        late = provisional or (bool(candidates) and not (results_dir(scale, root) / "arms" /
                                                         f"{c.name}.chosen.json").exists())
        rows += [("grid", u, late) for u in R.experiment_units(c.name, scale, over, root, cv_folds(scale, c.name))]
    part = deep_merge(grid.partitions(scale)["scale"], recipe)["partition"]
    named = {f"st_{k}": deep_merge(AUX["st"], {"partition": {"tau_max": [part["tau_max"][i]]}})
             for i, k in ((1, "middle"), (2, "fine"))}
    named["st_hier_tau"] = deep_merge(AUX["st"], grid.partitions(scale)[
        "scale" if chosen and chosen["partition"] != "scale" else "alternative"])
    from geomtl_core.compendium.paper_claims import ISN_TASK, isn_shares

    seeds = p["seeds"]
    start = {s: Path(root) / "runs" / scale / R.seed_run_name("st_hier", s, seeds) for s in seeds}
    started = {s: {"train": {"init_from": str(path)}} for s, path in start.items()}
    ready = all((path / "model.keras").exists() for path in start.values())  # the ISNs' keys need their start
    for k, share in isn_shares(scale, root).items():
        over = {"data": {"subset_task": ISN_TASK, "subset_class": k, "scene_tasks": []},
                "train": {"samples_per_epoch": max(1, round(share * budget))}}
        named[f"isn_scratch_{ISN_TASK}_c{k}"] = over
        rows += [("named", u, provisional or not ready) for u in R.experiment_units(
            f"isn_{ISN_TASK}_c{k}", scale, deep_merge(base, over), root, seed_overrides=started)]
    for name, over in named.items():
        rows += [("named", u, provisional) for u in R.experiment_units(name, scale, deep_merge(base, over), root)]
    measured = _measured(scale, root)
    out = []
    for stage, u, prov in rows:
        cached = not prov and u.cached(root)
        epochs = R.experiment_config(scale, {"name": u.name, **u.overrides}).train.epochs
        out.append({"stage": stage, "run": u.name, "kind": _kind(u.overrides), "epochs": epochs, "seed": u.seed,
                    "fold": "split" if u.fold is None else u.fold, "cached": cached, "provisional": prov,
                    "est_s": 0.0 if cached else round(_estimate(u, scale, budget, measured), 1)})
    return pd.DataFrame(out)


def summary(table: pd.DataFrame, workers: int = 1) -> str:
    """The plan in a few lines: runs per stage and kind, cached and to train, and the estimated time serially and
    on ``workers`` workers (independent runs share out; the recipe and arm choices come first)."""
    todo = table[~table["cached"]]
    lines = [f"{len(table)} runs planned, {int(table['cached'].sum())} cached, {len(todo)} to train"
             + (f" ({int(todo['provisional'].sum())} planned before a validation choice they depend on)"
                if todo["provisional"].any() else "")]
    for (stage, kind), g in table.groupby(["stage", "kind"], sort=False):
        lines.append(f"  {stage:7s} {kind:7s} {len(g):4d} runs, {int((~g['cached']).sum()):4d} to train, "
                     f"~{g['est_s'].sum() / 60:6.1f} min")
    total = todo["est_s"].sum()
    first = todo[todo["stage"].isin(["recipe"])]["est_s"].sum()
    lines.append(f"estimated training time: {total / 3600:.2f} h in one process on the CPU the costs were measured "
                 f"on" + (f"; about {(first + (total - first) / workers) / 3600:.2f} h on {workers} workers of the "
                          "same speed" if workers > 1 else ""))
    return "\n".join(lines)

