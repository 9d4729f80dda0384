"""The plan of a scale, before anything trains (``runner --dry-run``): every training run the book asks for, stage
by stage (the recipe's candidates, each learning arm's candidates, the grid's cells over seeds and folds, the
named runs of chapters 04 and 06), whether the run cache already holds it, and an estimated time from measured
per-epoch costs. Where a validation choice is not made yet, the later runs are planned with the scale's declared
settings and marked provisional: their number is exact, their keys and times are estimates."""

from __future__ import annotations

import json
from pathlib import Path

from geomtl_core.compendium import grid, paper_claims
from geomtl_core.compendium import runs as R
from geomtl_core.compendium.design import PLANNED_RECIPE, cells
from geomtl_core.compendium.project import find_root
from geomtl_core.compendium.results import results_dir
from geomtl_core.compendium.scales import scale_params

import pandas as pd

COST_S = {"frozen": (15.0, 12.0), "tuned": (50.0, 14.0), "cnn": (38.0, 14.0)}
"""Seconds per epoch over the default scale's 63K training images, and per run for the rest (evaluation, setup),
measured on this project's 2-core CPU (AMD EPYC, no GPU; default runs of 2026-12-03): heads on cached features,
EfficientNet-Lite0 with two blocks tuned on cached activations, small CNN from scratch. Scaled by samples per
epoch and, where images are read, by pixels; a scale's own finished runs replace them (their median)."""
RETRIEVAL_S = 30.0
"""Seconds a retrieval run (``train.retrieval``) adds for the hybrid's and kNN's choice on validation and their
test (20–26 s at the default scale's 10% share on a 2-core Intel Xeon, 2026-12-04, more with a larger gallery);
the scale's own finished retrieval runs replace it (their median)."""


def _kind(overrides: dict) -> str:
    model = overrides.get("model", {})
    if model.get("backbone") == "small_cnn":
        return "cnn"
    return "tuned" if model.get("finetune_blocks") else "frozen"


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
    retrieval = measured.get("retrieval", RETRIEVAL_S) if cfg.train.retrieval else 0.0
    return overhead + per_epoch * cfg.train.epochs + retrieval


def _measured(scale: str, root: Path) -> dict[str, float]:
    """Median seconds per epoch by kind of model over the scale's finished runs, and (``retrieval``) per
    retrieval run for the hybrid's and kNN's choice and test."""
    rows = []
    for f in results_dir(scale, root).rglob("*.json"):
        r = json.loads(f.read_text())
        if "train_time_s" in r and "config" in r and r.get("wall_time_s"):
            rows.append({"kind": _kind(r["config"]), "s": r["train_time_s"] / r["config"]["train"]["epochs"]})
            if (r.get("retrieval") or {}).get("seconds"):
                rows.append({"kind": "retrieval", "s": r["retrieval"]["seconds"]})
    return pd.DataFrame(rows).groupby("kind")["s"].median().to_dict() if rows else {}


def plan(scale: str, root: Path | None = None) -> pd.DataFrame:
    """One row per training run of the scale's book: stage, run, kind, epochs, seed, fold, cached, provisional
    (planned before a validation choice it depends on), estimated seconds. Nothing trains: the runs are those
    the runners compose (:mod:`~geomtl_core.compendium.grid`, :mod:`~geomtl_core.compendium.paper_claims`),
    asked with ``peek`` (the choices as recorded)."""
    root = find_root() if root is None else Path(root)
    R.ensure_proxy(scale, root, progress=False)
    choice = grid.recipe_choice(scale, root)
    provisional = choice is None
    units = grid.recipe_units(scale, root, choice["chosen"] if choice else PLANNED_RECIPE)
    rows: list[tuple[str, R.RunUnit, bool]] = [("recipe", u, provisional and u is units[-1]) for u in units]
    for c in cells(scale):
        arms = grid.arm_units(c, scale, root, peek=True)
        rows += [("arms", u, provisional) for u in arms]
        late = provisional or (bool(arms) and grid.arm_choice(c, scale, root) is None)
        rows += [("grid", u, late) for u in grid.cell_units(c, scale, root, peek=True)]
    named = paper_claims.single_partition_runs(scale, root, peek=True) | paper_claims.granularity_ablation(
        scale, root, peek=True)
    for name, over in named.items():
        rows += [("named", u, provisional) for u in grid.named_units(name, scale, over, root, peek=True)]
    for name, (_, over, start) in paper_claims.isn_runs(scale, root).items():
        ready = start is None or all((Path(o["train"]["init_from"]) / "model.keras").exists() for o in start.values())
        rows += [("named", u, provisional or not ready)  # a member's key holds its start model's
                 for u in grid.named_units(name, scale, over, root, seed_overrides=start, peek=True)]
    budget = grid.steps_budget(scale, root)
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

