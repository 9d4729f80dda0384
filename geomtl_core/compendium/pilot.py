"""A pilot of a confirmatory row (declared as one: it sets the allocation, never the hypotheses): both arms of a
grid cell (single-task and multi-task with the 3-class scene label) trained on a few folds with a few seeds under
candidate settings, to measure what one run's difference varies by (seed to seed within a fold, and between
folds) and what a run costs. :func:`geomtl_core.compendium.design.power_plan` projects designs from it.

Run: ``python -m geomtl_core.compendium.pilot --model cnn_w25 --size 32 --epochs 3 --folds 0 1 2 --seeds 0 1``
(writes ``results/<scale>/pilot/<tag>.json``; its runs go to ``runs/<scale>/pilot/``, cached like any run).
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
              root: Path | None = None) -> dict:
    """Train the cell's two arms at 100% of the images (``size`` px inputs, ``epochs`` passes) on each fold and
    seed, and return (and write) per-run accuracies at the primary endpoint, the paired differences (multi-task
    minus single-task, points), their variance components and the mean wall time of a run."""
    from geomtl_core.compendium import grid as G
    from geomtl_core.compendium.design import Cell
    from geomtl_core.compendium.provision import ensure_folds
    from geomtl_core.compendium.runs import run_once
    from geomtl_core.data.folds import fold_seed
    from geomtl_core.data.predictions import read_predictions
    from geomtl_core.geo.protocol import PRIMARY_KM, variance_components

    import numpy as np

    root = find_root() if root is None else Path(root)
    k = ensure_folds(scale, root)
    tag = pilot_tag(model, size, epochs)
    acc: dict[str, list[list[float]]] = {}
    walls = []
    for aux in ("st", "s3"):
        units = {k - 1 if u.fold is None else u.fold: u
                 for u in G.cell_units(Cell(model, 1.0, aux), scale, root)}
        rows = []
        for j in folds:
            row = []
            for s in seeds:
                over = deep_merge(units[j].overrides, {"data": {"image_size": size},
                                                       "train": {"epochs": epochs,
                                                                 "seed": fold_seed(s, None if j == k - 1 else j)}})
                name = f"pilot/{tag}-{aux}.k{j}.s{s}"
                res = run_once(name, scale, over, root)
                walls.append(res["wall_time_s"])
                pred = read_predictions(root / "runs" / scale / name / "predictions_test.csv")
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", default="default")
    p.add_argument("--model", default="cnn_w25")
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--folds", type=int, nargs="+", required=True)
    p.add_argument("--seeds", type=int, nargs="+", required=True)
    a = p.parse_args(argv)
    out = run_pilot(a.scale, a.model, a.size, a.epochs, a.folds, a.seeds)
    print(json.dumps({k: out[k] for k in ("diff", "components", "mean_wall_s_per_run")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
