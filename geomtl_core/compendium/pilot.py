"""A pilot of a confirmatory row (declared as one: it sets the allocation, never the hypotheses): both arms of a
grid cell (single-task and multi-task with the 3-class scene label) trained on a few folds with a few seeds under
candidate settings, to measure what one run's difference varies by (seed to seed within a fold, and between
folds) and what a run costs. :func:`geomtl_core.compendium.design.power_plan` projects designs from it.

Run: ``python -m geomtl_core.compendium.pilot --model cnn_w25 --size 32 --epochs 3 --folds 0 1 2 --seeds 0 1``
(writes ``results/<scale>/pilot/<tag>.json``; its runs go to ``runs/<scale>/pilot/``, cached like any run;
``--workers N`` trains them on N local processes first, ``--tag`` names a further batch of folds, and
:func:`pooled` stacks batches of one setting into one folds × seeds table).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from geomtl_core.compendium.project import find_root
from geomtl_core.compendium.results import results_dir
from geomtl_core.config import deep_merge


def pilot_tag(model: str, size: int, epochs: int) -> str:
    """``cnn_w25-32px-3ep``: a pilot's settings in its file and run names."""
    return f"{model}-{size}px-{epochs}ep"


def run_pilot(scale: str, model: str, size: int, epochs: int, folds: list[int], seeds: list[int],
              root: Path | None = None, tag: str | None = None, workers: int = 1) -> dict:
    """Train the cell's two arms at 100% of the images (``size`` px inputs, ``epochs`` passes) on each fold and
    seed, and return (and write, as ``<tag>.json``: :func:`pilot_tag` unless given) per-run accuracies at the
    primary endpoint, the paired differences (multi-task minus single-task, points), their variance components
    and the mean wall time of a run. The cell's settings are the scale's as recorded (``peek``: nothing else
    trains first); ``workers`` > 1 trains the runs on that many local processes before they are read."""
    from geomtl_core.compendium import grid as G
    from geomtl_core.compendium.design import Cell
    from geomtl_core.compendium.executors import Executor
    from geomtl_core.compendium.provision import ensure_folds
    from geomtl_core.compendium.runs import RunUnit, run_once, train_units
    from geomtl_core.data.folds import fold_seed
    from geomtl_core.data.predictions import read_predictions
    from geomtl_core.geo.protocol import PRIMARY_KM, variance_components

    import numpy as np

    root = find_root() if root is None else Path(root)
    k = ensure_folds(scale, root)
    setting = pilot_tag(model, size, epochs)  # run names: one setting's runs are shared by its batches
    tag = tag or setting
    plan: dict[tuple[str, int, int], RunUnit] = {}
    for aux in ("st", "s3"):
        units = {k - 1 if u.fold is None else u.fold: u
                 for u in G.cell_units(Cell(model, 1.0, aux), scale, root, peek=True)}
        for j in folds:
            for s in seeds:
                seed = fold_seed(s, None if j == k - 1 else j)
                over = deep_merge(units[j].overrides, {"data": {"image_size": size},
                                                       "train": {"epochs": epochs, "seed": seed}})
                plan[aux, j, s] = RunUnit(f"pilot/{setting}-{aux}.k{j}.s{s}", scale, over, "pilot", s, j)
    if workers > 1:
        train_units(list(plan.values()), root, Executor(workers=workers))
    acc: dict[str, list[list[float]]] = {}
    walls = []
    for aux in ("st", "s3"):
        rows = []
        for j in folds:
            row = []
            for s in seeds:
                u = plan[aux, j, s]
                res = run_once(u.name, scale, u.overrides, root)
                walls.append(res["wall_time_s"])
                pred = read_predictions(root / "runs" / scale / u.name / "predictions_test.csv")
                row.append(100 * float((pred.errors_km <= PRIMARY_KM).mean()))
            rows.append(row)
        acc[aux] = rows
    diff = np.asarray(acc["s3"]) - np.asarray(acc["st"])
    out = {"scale": scale, "model": model, "size": size, "epochs": epochs, "folds": folds, "seeds": seeds,
           "endpoint_km": PRIMARY_KM, "accuracy": acc, "diff": diff.round(4).tolist(),
           "components": variance_components(diff), "mean_wall_s_per_run": round(float(np.mean(walls)), 1)}
    path = results_dir(scale, root) / "pilot" / f"{tag}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    return out


def pooled(scale: str, tags: list[str], root: Path | None = None) -> dict:
    """Batches of one pilot setting (``results/<scale>/pilot/<tag>.json``, the same seeds, other folds) as one:
    their folds × seeds differences stacked and the variance components of the whole table."""
    from geomtl_core.geo.protocol import variance_components

    batches = [json.loads((results_dir(scale, root) / "pilot" / f"{t}.json").read_text()) for t in tags]
    if len({tuple(b["seeds"]) for b in batches}) != 1 or len({(b["size"], b["epochs"]) for b in batches}) != 1:
        raise ValueError(f"pilot batches {tags} differ in seeds or setting: they cannot be pooled")
    diff = [row for b in batches for row in b["diff"]]
    return {"tags": tags, "folds": [j for b in batches for j in b["folds"]], "seeds": batches[0]["seeds"],
            "diff": diff, "components": variance_components(diff)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", default="default")
    p.add_argument("--model", default="cnn_w25")
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--folds", type=int, nargs="+", required=True)
    p.add_argument("--seeds", type=int, nargs="+", required=True)
    p.add_argument("--tag", default=None, help="the result file's name (default: model-size-epochs)")
    p.add_argument("--workers", type=int, default=1, help="local training processes")
    a = p.parse_args(argv)
    out = run_pilot(a.scale, a.model, a.size, a.epochs, a.folds, a.seeds, tag=a.tag, workers=a.workers)
    print(json.dumps({k: out[k] for k in ("diff", "components", "mean_wall_s_per_run")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
