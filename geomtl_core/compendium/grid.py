"""Running the experiment grid of :mod:`geomtl_core.compendium.design`: the training recipe chosen on
validation, the grid's equal step budget, and every cell trained (or reused) over the scale's seeds."""

from __future__ import annotations

import json
from pathlib import Path

from geomtl_core.compendium import runs as R
from geomtl_core.compendium.design import RECIPES, Cell, cell_overrides, cells
from geomtl_core.compendium.project import find_root
from geomtl_core.compendium.results import results_dir
from geomtl_core.compendium.scales import scale_params
from geomtl_core.config import deep_merge
from geomtl_core.geo.protocol import PRIMARY_KM


def steps_budget(scale: str, root: Path | None = None) -> int:
    """Samples per epoch of every grid run: the size of the training split (equal steps for any share)."""
    from geomtl_core.data.loaders import load_meta

    return len(load_meta(R.experiment_config(scale, root=root), "train"))


def recipe(scale: str, root: Path | None = None) -> dict:
    """The training recipe of the scale: each of :data:`RECIPES` trains the single-task three-partitioning model
    once (first seed), and the one with the best validation accuracy at the primary distance (f*) wins.
    Recorded in ``results/<scale>/recipe/chosen.json`` (rewritten only when its content changes); returns
    the chosen overrides."""
    root = find_root() if root is None else Path(root)
    seed = scale_params(scale)["seeds"][0]
    table = {}
    for name, over in RECIPES.items():
        r = R.run_once(f"recipe/{name}", scale, deep_merge(over, {"train": {"seed": seed}}), root, 0)
        table[name] = {"val_acc": r["val"]["methods"][r["val"]["best"]][f"acc_{PRIMARY_KM}km"],
                       "train_time_s": r["train_time_s"], "overrides": over}
    chosen = max(table, key=lambda n: table[n]["val_acc"])
    out = {"chosen": chosen, "endpoint_km": PRIMARY_KM, "candidates": table}
    path = results_dir(scale, root) / "recipe" / "chosen.json"
    if not path.exists() or json.loads(path.read_text()) != json.loads(json.dumps(out)):
        R.write_json_atomic(out, path)
    return RECIPES[chosen]


def run_named(name: str, scale: str, overrides: dict | None = None, root: Path | None = None) -> dict:
    """:func:`runs.run` under the scale's chosen recipe and the grid's equal step budget."""
    base = deep_merge(recipe(scale, root), {"train": {"samples_per_epoch": steps_budget(scale, root)}})
    return R.run(name, scale, deep_merge(base, overrides or {}), root=root)


def run_cell(cell: Cell, scale: str, root: Path | None = None) -> dict:
    """Train (or reuse) one grid cell over the scale's seeds."""
    return run_named(cell.name, scale, cell_overrides(cell, scale), root)


def run_grid(scale: str, root: Path | None = None) -> dict[Cell, dict]:
    """Every cell of the scale's grid, trained (or reused), with one progress bar across cells."""
    from tqdm.auto import tqdm

    todo = cells(scale)
    return {c: run_cell(c, scale, root) for c in tqdm(todo, desc="grid", leave=False)}
