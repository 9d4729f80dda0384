"""Reading what runs left behind: ``results/<scale>/<name>.json`` (one per experiment, its seeds inside) and
the per-seed prediction files under ``runs/<scale>/``, and comparing two experiments by name."""

from __future__ import annotations

import json
import re
from pathlib import Path

from geomtl_core.compendium.project import find_root
from geomtl_core.compendium.statistics import compare_files
from geomtl_core.geo.protocol import N_BOOT, PRIMARY_KM
from geomtl_core.geo.stats import PairedComparison


def results_dir(scale: str, root: Path | None = None) -> Path:
    """``results/<scale>`` of the project."""
    return (find_root() if root is None else Path(root)) / "results" / scale


def read_result(scale: str, name: str, root: Path | None = None) -> dict:
    """The result JSON of one experiment (a clear error when it has not run)."""
    path = results_dir(scale, root) / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"experiment {name!r} has no result at scale {scale!r} ({path}); run its notebook")
    return json.loads(path.read_text())


def load_results(scale: str, root: Path | None = None) -> dict[str, dict]:
    """Every experiment's result JSON of a scale, by experiment name (the extra seeds' runs are inside)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(results_dir(scale, root).glob("*.json"))
            if not re.search(r"\.(s|k)\d+(\.s\d+)?$", p.stem)}


def seed_predictions(scale: str, name: str, root: Path | None = None, method: str | None = None,
                     seeds: list[str] | None = None) -> list[Path]:
    """Per-image test prediction files of an experiment, one per seed (``method``: a per-method file; ``seeds``:
    only these, in this order)."""
    root = find_root() if root is None else Path(root)
    by_seed = read_result(scale, name, root).get("seeds", {"0": name})
    runs = [by_seed[s] for s in (by_seed if seeds is None else seeds)]
    stem = "predictions_test" if method is None else f"predictions_test.{method}"
    return [root / "runs" / scale / r / f"{stem}.csv" for r in runs]


def fold_predictions(scale: str, name: str, root: Path | None = None,
                     method: str | None = None, seeds: list[str] | None = None) -> dict[str, list[Path]]:
    """Test prediction files of an experiment per cross-validation fold it ran (``{"base": files}`` when it ran
    only the scale's split), one file per seed in each (``method``: a per-method file; ``seeds``: only these)."""
    root = find_root() if root is None else Path(root)
    res = read_result(scale, name, root)
    folds = res.get("folds") or {"base": res.get("seeds", {"0": name})}
    stem = "predictions_test" if method is None else f"predictions_test.{method}"
    return {f: [root / "runs" / scale / runs[s] / f"{stem}.csv" for s in (runs if seeds is None else seeds)]
            for f, runs in folds.items()}


def common_seeds(scale: str, a: str, b: str, root: Path | None = None) -> list[str]:
    """The seeds both experiments ran (in a's order): a comparison stands on these only (the A/A cell runs more
    seeds than the cells it is compared with); none in common is an error."""
    sa, sb = (list(read_result(scale, n, root).get("seeds", {"0": n})) for n in (a, b))
    common = [s for s in sa if s in sb]
    if not common:
        raise ValueError(f"{a} and {b} ran no seed in common ({sa} vs {sb})")
    return common


def compare_runs(scale: str, a: str, b: str, root: Path | None = None, n_boot: int = N_BOOT, seed: int = 0,
                 method_a: str | None = None, method_b: str | None = None, pooled: bool = False) -> PairedComparison:
    """A − B over the seeds both ran (:func:`common_seeds`), paired on the same images and seeds
    (``method_a``/``method_b`` pick a per-method prediction file, e.g. ``hierarchy`` against a head's
    partitioning within one model). ``pooled``: over every cross-validation fold both ran (blocks nested in
    folds), else on the scale's split."""
    seeds = common_seeds(scale, a, b, root)
    if pooled:
        fa, fb = (fold_predictions(scale, n, root, m, seeds) for n, m in ((a, method_a), (b, method_b)))
        folds = [f for f in fa if f in fb]
        if not folds:
            raise ValueError(f"{a} and {b} ran no cross-validation fold in common ({list(fa)} vs {list(fb)})")
        return compare_files(*[[list(files) for files in zip(*[fx[f] for f in folds], strict=True)]
                               for fx in (fa, fb)], n_boot=n_boot, seed=seed)
    return compare_files(seed_predictions(scale, a, root, method_a, seeds),
                         seed_predictions(scale, b, root, method_b, seeds), n_boot=n_boot, seed=seed)


def mean_accuracy(scale: str, name: str, root: Path | None = None, endpoint_km: int = PRIMARY_KM) -> float:
    """Accuracy at ``endpoint_km``, mean over the experiment's seeds (a fraction)."""
    return float(read_result(scale, name, root)["seed_summary"][f"acc_{endpoint_km}km"]["mean"])
