"""The plan of a scale, before anything trains (``runner --dry-run``): every training run the book asks for, stage
by stage (the recipe's candidates, each learning arm's candidates, the grid's cells over seeds and folds, the
named runs of chapters 04 and 06), whether the run cache already holds it, and an estimated time from measured
per-epoch costs (``measured.json``). Where a validation choice is not made yet, the later runs are planned with the
scale's declared settings and marked provisional: their number is exact, their keys and times are estimates.

Planning writes nothing: not the proxy export, not its folds, no result. What the plan needs from the export (the
training split's size, its scene shares, the number of folds) is read from it when it is there, else computed from
the proxy's locations and labels as the export will split them
(:func:`~geomtl_core.compendium.provision.export_sizes`)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from geomtl_core.compendium import grid, paper_claims
from geomtl_core.compendium import provision as P
from geomtl_core.compendium import runs as R
from geomtl_core.compendium.design import cells
from geomtl_core.compendium.project import find_root
from geomtl_core.compendium.results import results_dir
from geomtl_core.files import model_file

import pandas as pd

MEASURED: dict = json.loads(Path(__file__).with_name("measured.json").read_text())
"""The measured times (``measured.json``: data, so that a new measurement changes no run key)."""
_COSTS = MEASURED["run_costs"]
COST_S: dict[str, tuple[float, float]] = {k: (float(e), float(r))
                                          for k, (e, r) in _COSTS["per_epoch_and_run_s"].items()}
"""Seconds per epoch over :data:`COST_IMAGES` training images of :data:`COST_PX` pixels, and per run for the rest,
by kind of model (measured, ``measured.json``). Scaled by samples per epoch and, where images are read, by pixels;
a scale's own finished runs replace them (their median)."""
COST_IMAGES: int = int(_COSTS["reference_train_images"])
COST_PX: int = int(_COSTS["reference_size_px"])
COST_SIZE_PX: dict[str, int] = {k: int(v) for k, v in _COSTS.get("size_px", {}).items()}
"""The input size a kind's cost was measured at where it is not :data:`COST_PX` (``measured.json``)."""
WALL_RATIO: dict[int, float] = {int(n): float(r) for n, r in MEASURED["workers"]["wall_ratio"].items()}
"""Measured wall time of the same runs on N local processes against one (``measured.json``, this 2-core CPU)."""
RETRIEVAL_S: float = float(MEASURED["retrieval"]["planned_s"])
"""Seconds a retrieval run (``train.retrieval``) adds for the hybrid's and kNN's choice on validation and their
test (``measured.json``); the scale's own finished retrieval runs replace it (their median)."""


def _kind(overrides: dict) -> str:
    model = overrides.get("model", {})
    if model.get("backbone") == "small_cnn":
        return "cnn"
    return "tuned" if model.get("finetune_blocks") else "frozen"


def _estimate(unit: R.RunUnit, scale: str, default_samples: int, measured: dict[str, float],
              root: Path | None = None) -> float:
    """Seconds one run should take: the scale's measured median per epoch of its kind, else :data:`COST_S`."""
    cfg = P.experiment_config(scale, {"name": unit.name, **unit.overrides}, root)
    kind = _kind(unit.overrides)
    per_epoch, overhead = COST_S[kind]
    if kind in measured:
        per_epoch = measured[kind]
    else:
        samples = cfg.train.samples_per_epoch or default_samples
        px = COST_SIZE_PX.get(kind, COST_PX)
        per_epoch *= samples / COST_IMAGES * ((cfg.data.image_size / px) ** 2 if kind != "frozen" else 1.0)
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
    (planned before a validation choice it depends on), estimated seconds. Nothing trains and nothing is written:
    the runs are those the runners compose (:mod:`~geomtl_core.compendium.grid`,
    :mod:`~geomtl_core.compendium.paper_claims`), asked with ``peek`` (the choices as recorded), on the export's
    sizes (:func:`~geomtl_core.compendium.provision.export_sizes`; in ``attrs["sizes"]`` of the table)."""
    root = find_root() if root is None else Path(root)
    choice = grid.recipe_choice(scale, root)
    provisional = choice is None
    units = grid.recipe_units(scale, root, choice["chosen"] if choice else None)
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
        ready = start is None or all(model_file(o["train"]["init_from"]) is not None for o in start.values())
        rows += [("named", u, provisional or not ready)  # a member's key holds its start model's
                 for u in grid.named_units(name, scale, over, root, seed_overrides=start, peek=True)]
    budget = grid.steps_budget(scale, root)
    measured = _measured(scale, root)
    out = []
    for stage, u, prov in rows:
        cached = not prov and u.cached(root)
        epochs = P.experiment_config(scale, {"name": u.name, **u.overrides}, root).train.epochs
        out.append({"stage": stage, "run": u.name, "kind": _kind(u.overrides), "epochs": epochs, "seed": u.seed,
                    "fold": "split" if u.fold is None else u.fold, "cached": cached, "provisional": prov,
                    "est_s": 0.0 if cached else round(_estimate(u, scale, budget, measured, root), 1)})
    table = pd.DataFrame(out)
    table.attrs["sizes"] = asdict(P.export_sizes(scale, root))
    return table


def parallel_s(total: float, first: float, workers: int) -> float:
    """Seconds of a plan (``total``, of which ``first`` runs before the rest can share out) on ``workers`` local
    processes: the rest times the measured wall ratio of that many processes on the measured CPU
    (:data:`WALL_RATIO`), else divided among workers of the same speed."""
    if workers <= 1:
        return total
    return first + (total - first) * WALL_RATIO.get(workers, 1.0 / workers)


def summary(table: pd.DataFrame, workers: int = 1) -> str:
    """The plan in a few lines: runs per stage and kind, cached and to train, the estimated time serially and on
    ``workers`` workers (independent runs share out; the recipe and arm choices come first), and where the export's
    sizes came from (:func:`plan`'s ``attrs["sizes"]``)."""
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
                 f"on" + (f"; about {parallel_s(total, first, workers) / 3600:.2f} h on {workers} "
                          + ("processes of that CPU (their measured wall ratio)" if workers in WALL_RATIO else
                             "workers of the same speed") if workers > 1 else ""))
    if sizes := table.attrs.get("sizes"):
        lines.append(f"sizes: {sizes['train_images']:,} training images, {sizes['k']} folds, "
                     + ("read from the proxy export" if sizes["source"] == "export" else
                        "estimated without the proxy export (not there yet, and not written): computed from the "
                        "proxy's locations as the export will split them"))
    return "\n".join(lines)

