"""Running the experiment grid of :mod:`geomtl_core.compendium.design`: the training recipe chosen on
validation, the grid's equal step budget, and every cell trained (or reused) over the scale's seeds."""

from __future__ import annotations

import json
from pathlib import Path

from geomtl_core.compendium import runs as R
from geomtl_core.compendium.design import AUX, RECIPES, Cell, cell_overrides, cells, cv_folds
from geomtl_core.compendium.project import find_root
from geomtl_core.compendium.results import results_dir
from geomtl_core.compendium.scales import scale_params
from geomtl_core.config import deep_merge
from geomtl_core.geo.protocol import PRIMARY_KM


def steps_budget(scale: str, root: Path | None = None) -> int:
    """Samples per epoch of every grid run: the size of the training split (equal steps for any share)."""
    from geomtl_core.data.loaders import load_meta

    return len(load_meta(R.experiment_config(scale, root=root), "train"))


def partitions(scale: str) -> dict[str, dict]:
    """The partition granularities the scale chooses between on validation: its declared one (``scale``: no
    override) and its alternative (``SCALES[scale]["granularity"]``, the one first used)."""
    p = scale_params(scale)
    return {"scale": {"partition": {"tau_min": p["tau_min"], "tau_max": list(p["tau_max"])}},
            "alternative": {"partition": dict(p["granularity"])}}


def recipe(scale: str, root: Path | None = None) -> dict:
    """The training recipe of the scale, chosen on validation in two steps (first seed): each of :data:`RECIPES`
    trains the single-task three-partitioning model and the best validation accuracy at the primary distance
    (f*) wins; then the alternative partition granularity (:func:`partitions`) trains under that recipe and
    replaces the scale's if it is better on validation (ties keep the scale's). Recorded in
    ``results/<scale>/recipe/chosen.json`` (rewritten only when its content changes); returns the chosen
    overrides (the recipe's, plus the partition when the alternative won)."""
    root = find_root() if root is None else Path(root)
    seed = {"train": {"seed": scale_params(scale)["seeds"][0]}}

    def val_acc(r: dict) -> float:
        return r["val"]["methods"][r["val"]["best"]][f"acc_{PRIMARY_KM}km"]

    table = {}
    for name, over in RECIPES.items():
        r = R.run_once(f"recipe/{name}", scale, deep_merge(over, seed), root, 0)
        table[name] = {"val_acc": val_acc(r), "train_time_s": r["train_time_s"], "overrides": over}
    chosen = max(table, key=lambda n: table[n]["val_acc"])
    cands = partitions(scale)
    alt = R.run_once(f"recipe/{chosen}-alternative_partition", scale,
                     deep_merge(deep_merge(RECIPES[chosen], cands["alternative"]), seed), root, 0)
    parts = {"scale": {"val_acc": table[chosen]["val_acc"], **cands["scale"]},
             "alternative": {"val_acc": val_acc(alt), **cands["alternative"]}}
    partition = max(parts, key=lambda n: parts[n]["val_acc"])
    out = {"chosen": chosen, "endpoint_km": PRIMARY_KM, "candidates": table, "partition": partition,
           "partitions": parts}
    path = results_dir(scale, root) / "recipe" / "chosen.json"
    if not path.exists() or json.loads(path.read_text()) != json.loads(json.dumps(out)):
        R.write_json_atomic(out, path)
    return deep_merge(RECIPES[chosen], cands[partition] if partition != "scale" else {})


def chosen_partition(scale: str, root: Path | None = None) -> dict:
    """``{"tau_min", "tau_max"}`` of the granularity :func:`recipe` chose on validation."""
    return recipe(scale, root).get("partition") or partitions(scale)["scale"]["partition"]


def other_partition(scale: str, root: Path | None = None) -> dict:
    """The partition override of the granularity :func:`recipe` did not choose (the declared ablation)."""
    recipe(scale, root)
    chosen = json.loads((results_dir(scale, root) / "recipe" / "chosen.json").read_text())["partition"]
    return partitions(scale)["alternative" if chosen == "scale" else "scale"]


def named_overrides(scale: str, overrides: dict | None = None, root: Path | None = None) -> dict:
    """The overrides of a named run: the scale's chosen recipe, the grid's equal step budget, then ``overrides``."""
    base = deep_merge(recipe(scale, root), {"train": {"samples_per_epoch": steps_budget(scale, root)}})
    return deep_merge(base, overrides or {})


def run_named(name: str, scale: str, overrides: dict | None = None, root: Path | None = None,
              seed_overrides: dict[int, dict] | None = None) -> dict:
    """:func:`runs.run` under the scale's chosen recipe and the grid's equal step budget (on the declared
    cross-validation folds when the experiment is one of the scale's cross-validated cells)."""
    return R.run(name, scale, named_overrides(scale, overrides, root), root=root, folds=cv_folds(scale, name),
                 seed_overrides=seed_overrides)


def arm_candidates(cell: Cell, scale: str, root: Path | None = None) -> dict[str, dict]:
    """Name -> overrides of the candidates (epochs, and the scene weight of a multi-task arm) that
    :func:`arm_overrides` trains for a cell whose backbone learns; ``{}`` for the others."""
    arms = scale_params(scale).get("arms")
    if not arms or cell.model not in arms["models"]:
        return {}
    weights = arms["scene_weight"] if AUX[cell.aux]["data"]["scene_tasks"] else [None]
    return {f"{cell.name}-e{e}" + (f"-w{w:g}" if w is not None else ""):
            {"train": {"epochs": e}, **({"model": {"scene_weight": w}} if w is not None else {})}
            for e in arms["epochs"][cell.model] for w in weights}


def arm_units(cell: Cell, scale: str, root: Path | None = None) -> list[R.RunUnit]:
    """The candidate runs of :func:`arm_candidates` as units of work (first seed, the scale's split)."""
    seed = scale_params(scale)["seeds"][0]
    base = named_overrides(scale, cell_overrides(cell, scale), root)
    return [R.RunUnit(f"arms/{name}", scale, deep_merge(deep_merge(base, over), {"train": {"seed": seed}}),
                      cell.name, seed) for name, over in arm_candidates(cell, scale, root).items()]


def arm_overrides(cell: Cell, scale: str, root: Path | None = None) -> dict:
    """Epochs and, for a multi-task arm, the scene loss weight of a cell whose backbone learns (``SCALES[scale]
    ["arms"]``: the tuned blocks, the small CNNs), chosen on validation for each arm on its own: every candidate
    trains once (first seed, the scale's split) and the best validation accuracy at the primary distance (f*)
    wins (ties: fewer epochs, then the smaller weight). Recorded in ``results/<scale>/arms/<cell>.chosen.json``;
    ``{}`` for the other cells (the scale's recipe)."""
    candidates = arm_candidates(cell, scale, root)
    if not candidates:
        return {}
    root = find_root() if root is None else Path(root)
    table = {}
    for unit, (name, over) in zip(arm_units(cell, scale, root), candidates.items(), strict=True):
        r = R.run_once(unit.name, scale, unit.overrides, root, 0)
        table[name] = {"val_acc": r["val"]["methods"][r["val"]["best"]][f"acc_{PRIMARY_KM}km"],
                       "train_time_s": r["train_time_s"], "overrides": over}
    chosen = max(table, key=lambda n: table[n]["val_acc"])  # first of equals: fewest epochs, smallest weight
    out = {"cell": cell.name, "chosen": chosen, "endpoint_km": PRIMARY_KM, "candidates": table}
    path = results_dir(scale, root) / "arms" / f"{cell.name}.chosen.json"
    if not path.exists() or json.loads(path.read_text()) != json.loads(json.dumps(out)):
        R.write_json_atomic(out, path)
    return table[chosen]["overrides"]


def cell_run_overrides(cell: Cell, scale: str, root: Path | None = None) -> dict:
    """A cell's overrides before the recipe: its model, share and label, then its arm's validation choice."""
    return deep_merge(cell_overrides(cell, scale), arm_overrides(cell, scale, root))


def run_cell(cell: Cell, scale: str, root: Path | None = None) -> dict:
    """Train (or reuse) one grid cell over the scale's seeds (its arm's epochs and scene weight chosen on
    validation first when its backbone learns, :func:`arm_overrides`)."""
    return run_named(cell.name, scale, cell_run_overrides(cell, scale, root), root)


def cell_units(cell: Cell, scale: str, root: Path | None = None) -> list[R.RunUnit]:
    """Every run of one cell (seeds, and folds when cross-validated) as units of work."""
    return R.experiment_units(cell.name, scale, named_overrides(scale, cell_run_overrides(cell, scale, root), root),
                              root, cv_folds(scale, cell.name))


def run_grid(scale: str, root: Path | None = None, executor=None) -> dict[Cell, dict]:
    """Every cell of the scale's grid, trained (or reused). With a parallel executor (``executor``, or the
    runner's ``--workers``/``--dask`` through the environment) the arms' candidates and then every run of every
    cell are trained on it first, as independent units; the cells are then read back in order."""
    from geomtl_core.compendium.executors import Executor

    from tqdm.auto import tqdm

    root = find_root() if root is None else Path(root)
    executor = executor or Executor.from_env()
    R.ensure_proxy(scale, root, progress=False)
    todo = cells(scale)
    if executor.parallel:
        recipe(scale, root)
        R.train_units([u for c in todo for u in arm_units(c, scale, root)], root, executor)
        R.train_units([u for c in todo for u in cell_units(c, scale, root)], root, executor)
    return {c: run_cell(c, scale, root) for c in tqdm(todo, desc="grid", leave=False)}
