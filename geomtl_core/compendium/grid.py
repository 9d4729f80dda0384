"""Running the experiment grid of :mod:`geomtl_core.compendium.design`: the training recipe chosen on
validation, the grid's equal step budget, and every cell trained (or reused) over the scale's seeds."""

from __future__ import annotations

import json
from pathlib import Path

from geomtl_core.compendium import provision as P
from geomtl_core.compendium import runs as R
from geomtl_core.compendium.design import AUX, PLANNED_RECIPE, RECIPES, Cell, cell_overrides, cells, cv_folds
from geomtl_core.compendium.project import find_root
from geomtl_core.compendium.results import results_dir
from geomtl_core.compendium.scales import scale_params
from geomtl_core.config import deep_merge
from geomtl_core.geo.protocol import PRIMARY_KM
from geomtl_core.models.bundle import write_json_atomic


def steps_budget(scale: str, root: Path | None = None) -> int:
    """Samples per epoch of every grid run: the size of the training split (equal steps for any share;
    :func:`provision.export_sizes`)."""
    return P.export_sizes(scale, root).train_images


def partitions(scale: str) -> dict[str, dict]:
    """The partition granularities the scale chooses between on validation: its declared one (``scale``: no
    override) and its alternative (``SCALES[scale]["granularity"]``, the one first used)."""
    p = scale_params(scale)
    return {"scale": {"partition": {"tau_min": p["tau_min"], "tau_max": list(p["tau_max"])}},
            "alternative": {"partition": dict(p["granularity"])}}


def _recorded(path: Path) -> dict | None:
    """A recorded validation choice, or None before it is made."""
    return json.loads(path.read_text()) if path.exists() else None


def recipe_choice(scale: str, root: Path | None = None) -> dict | None:
    """What :func:`recipe` recorded (``results/<scale>/recipe/chosen.json``); None before it has run."""
    return _recorded(results_dir(scale, root) / "recipe" / "chosen.json")


def recipe_candidates(scale: str) -> dict[str, dict]:
    """The recipes :func:`recipe` weighs: every one of :data:`RECIPES`, or only the one the scale fixes in advance
    (``SCALES[scale]["recipe"]``: the same recipe for both arms, chosen on neither)."""
    fixed = scale_params(scale).get("recipe")
    return {fixed: RECIPES[fixed]} if fixed else dict(RECIPES)


def planned_recipe(scale: str) -> str:
    """The recipe a plan assumes before :func:`recipe` has recorded its choice: the scale's fixed one, else
    :data:`PLANNED_RECIPE`."""
    return scale_params(scale).get("recipe") or PLANNED_RECIPE


def recipe_units(scale: str, root: Path | None = None, chosen: str | None = None) -> list[R.RunUnit]:
    """The runs :func:`recipe` trains (first seed, the scale's split): every candidate of
    :func:`recipe_candidates`, then the alternative partition granularity under the ``chosen`` one."""
    seed = scale_params(scale)["seeds"][0]
    chosen = chosen or planned_recipe(scale)
    over = {f"recipe/{n}": o for n, o in recipe_candidates(scale).items()}
    over[f"recipe/{chosen}-alternative_partition"] = deep_merge(RECIPES[chosen], partitions(scale)["alternative"])
    return [R.RunUnit(n, scale, deep_merge(o, {"train": {"seed": seed}}), "recipe", seed) for n, o in over.items()]


def recipe(scale: str, root: Path | None = None, peek: bool = False) -> dict:
    """The training recipe of the scale, chosen on validation in two steps (first seed): each candidate
    (:func:`recipe_candidates`: one where the scale fixes it in advance) trains the single-task
    three-partitioning model and the best validation accuracy at the primary distance
    (f*) wins; then the alternative partition granularity (:func:`partitions`) trains under that recipe and
    replaces the scale's if it is better on validation (ties keep the scale's). Recorded in
    ``results/<scale>/recipe/chosen.json`` (rewritten only when its content changes); returns the chosen
    overrides (the recipe's, plus the partition when the alternative won). ``peek``: train nothing, read the
    recorded choice (:data:`PLANNED_RECIPE` and the scale's partition before there is one)."""
    if peek:
        chosen = recipe_choice(scale, root) or {"chosen": planned_recipe(scale), "partition": "scale"}
        return deep_merge(RECIPES[chosen["chosen"]],
                          partitions(scale)[chosen["partition"]] if chosen["partition"] != "scale" else {})
    root = find_root() if root is None else Path(root)

    def val_acc(r: dict) -> float:
        return r["val"]["methods"][r["val"]["best"]][f"acc_{PRIMARY_KM}km"]

    def train(u: R.RunUnit) -> dict:
        return R.run_once(u.name, scale, u.overrides, root, 0)

    table = {}
    candidates = recipe_candidates(scale)
    for name, unit in zip(candidates, recipe_units(scale, root)[:len(candidates)], strict=True):
        r = train(unit)
        table[name] = {"val_acc": val_acc(r), "train_time_s": r["train_time_s"], "overrides": candidates[name]}
    chosen = max(table, key=lambda n: table[n]["val_acc"])
    alt = train(recipe_units(scale, root, chosen)[-1])
    cands = partitions(scale)
    parts = {"scale": {"val_acc": table[chosen]["val_acc"], **cands["scale"]},
             "alternative": {"val_acc": val_acc(alt), **cands["alternative"]}}
    partition = max(parts, key=lambda n: parts[n]["val_acc"])
    out = {"chosen": chosen, "fixed": "recipe" in scale_params(scale), "endpoint_km": PRIMARY_KM,
           "candidates": table, "partition": partition, "partitions": parts}
    path = results_dir(scale, root) / "recipe" / "chosen.json"
    if not path.exists() or json.loads(path.read_text()) != json.loads(json.dumps(out)):
        write_json_atomic(out, path)
    return recipe(scale, root, peek=True)


def chosen_partition(scale: str, root: Path | None = None, peek: bool = False) -> dict:
    """``{"tau_min", "tau_max"}`` of the granularity :func:`recipe` chose on validation."""
    return recipe(scale, root, peek).get("partition") or partitions(scale)["scale"]["partition"]


def other_partition(scale: str, root: Path | None = None, peek: bool = False) -> dict:
    """The partition override of the granularity :func:`recipe` did not choose (the declared ablation)."""
    recipe(scale, root, peek)
    chosen = (recipe_choice(scale, root) or {"partition": "scale"})["partition"]
    return partitions(scale)["alternative" if chosen == "scale" else "scale"]


def named_overrides(scale: str, overrides: dict | None = None, root: Path | None = None, peek: bool = False) -> dict:
    """The overrides of a named run: the scale's chosen recipe, the grid's equal step budget, then ``overrides``
    (``peek``: the recipe as recorded, :func:`recipe`)."""
    base = deep_merge(recipe(scale, root, peek), {"train": {"samples_per_epoch": steps_budget(scale, root)}})
    return deep_merge(base, overrides or {})


def run_named(name: str, scale: str, overrides: dict | None = None, root: Path | None = None,
              seed_overrides: dict[int, dict] | None = None) -> dict:
    """:func:`runs.run` under the scale's chosen recipe and the grid's equal step budget (on the declared
    cross-validation folds when the experiment is one of the scale's cross-validated cells)."""
    return R.run(name, scale, named_overrides(scale, overrides, root), root=root, folds=cv_folds(scale, name),
                 seed_overrides=seed_overrides)


def named_units(name: str, scale: str, overrides: dict | None = None, root: Path | None = None,
                seed_overrides: dict[int, dict] | None = None, peek: bool = False) -> list[R.RunUnit]:
    """The runs :func:`run_named` trains, as units of work (``peek``: under the recipe as recorded)."""
    return R.experiment_units(name, scale, named_overrides(scale, overrides, root, peek), root,
                              cv_folds(scale, name), seed_overrides)


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


def arm_units(cell: Cell, scale: str, root: Path | None = None, peek: bool = False) -> list[R.RunUnit]:
    """The candidate runs of :func:`arm_candidates` as units of work (first seed, the scale's split)."""
    seed = scale_params(scale)["seeds"][0]
    base = named_overrides(scale, cell_overrides(cell, scale), root, peek)
    return [R.RunUnit(f"arms/{name}", scale, deep_merge(deep_merge(base, over), {"train": {"seed": seed}}),
                      cell.name, seed) for name, over in arm_candidates(cell, scale, root).items()]


def arm_choice(cell: Cell, scale: str, root: Path | None = None) -> dict | None:
    """What :func:`arm_overrides` recorded for the cell (``results/<scale>/arms/<cell>.chosen.json``), or None."""
    return _recorded(results_dir(scale, root) / "arms" / f"{cell.name}.chosen.json")


def arm_overrides(cell: Cell, scale: str, root: Path | None = None, peek: bool = False) -> dict:
    """Epochs and, for a multi-task arm, the scene loss weight of a cell whose backbone learns (``SCALES[scale]
    ["arms"]``: the tuned blocks, the small CNNs), chosen on validation for each arm on its own: every candidate
    trains once (first seed, the scale's split) and the best validation accuracy at the primary distance (f*)
    wins (ties: fewer epochs, then the smaller weight). Recorded in ``results/<scale>/arms/<cell>.chosen.json``;
    ``{}`` for the other cells (the scale's recipe). ``peek``: train nothing, read the recorded choice (the
    first candidate before there is one)."""
    candidates = arm_candidates(cell, scale, root)
    if not candidates:
        return {}
    if peek:
        chosen = arm_choice(cell, scale, root)
        return candidates[chosen["chosen"]] if chosen else next(iter(candidates.values()))
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
        write_json_atomic(out, path)
    return table[chosen]["overrides"]


def cell_run_overrides(cell: Cell, scale: str, root: Path | None = None, peek: bool = False) -> dict:
    """A cell's overrides before the recipe: its model, share and label, then its arm's validation choice."""
    return deep_merge(cell_overrides(cell, scale), arm_overrides(cell, scale, root, peek))


def run_cell(cell: Cell, scale: str, root: Path | None = None) -> dict:
    """Train (or reuse) one grid cell over the scale's seeds (its arm's epochs and scene weight chosen on
    validation first when its backbone learns, :func:`arm_overrides`)."""
    return run_named(cell.name, scale, cell_run_overrides(cell, scale, root), root)


def cell_units(cell: Cell, scale: str, root: Path | None = None, peek: bool = False) -> list[R.RunUnit]:
    """Every run of one cell (seeds, and folds when cross-validated) as units of work (``peek``: under the
    recipe and arm choice as recorded)."""
    return named_units(cell.name, scale, cell_run_overrides(cell, scale, root, peek), root, peek=peek)


def run_grid(scale: str, root: Path | None = None, executor=None) -> dict[Cell, dict]:
    """Every cell of the scale's grid, trained (or reused). With a parallel executor (``executor``, or the
    runner's ``--workers``/``--dask`` through the environment) the arms' candidates and then every run of every
    cell are trained on it first, as independent units; the cells are then read back in order."""
    from geomtl_core.compendium.executors import Executor

    from tqdm.auto import tqdm

    root = find_root() if root is None else Path(root)
    executor = executor or Executor.from_env()
    P.ensure_proxy(scale, root, progress=False)
    todo = cells(scale)
    if executor.parallel:
        recipe(scale, root)
        R.train_units([u for c in todo for u in arm_units(c, scale, root)], root, executor)
        R.train_units([u for c in todo for u in cell_units(c, scale, root)], root, executor)
    return {c: run_cell(c, scale, root) for c in tqdm(todo, desc="grid", leave=False)}
