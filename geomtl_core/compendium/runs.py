"""Training runs that are reused while nothing they depend on has changed: a run's name (experiment, seed, fold),
the units of an experiment, their execution under a lock, and the experiment's pooled result.

A run is keyed by :func:`~geomtl_core.compendium.run_key.cache_key` (its config, the code that trains and
evaluates it, the data it reads), trained under a lock into a staging folder, evaluated there with the model in
memory (:mod:`~geomtl_core.compendium.run_eval`) and published by a folder swap, so two processes asking for the
same run get one training and the same result, and a process killed mid-run leaves no half result (its staging
folder is resumed, or replaced when its key differs). The scale's data and base config come from
:mod:`~geomtl_core.compendium.provision`.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from geomtl_core.compendium.project import find_root, git_commit, package_versions
from geomtl_core.compendium.provision import ensure_folds, experiment_config, fold_count
from geomtl_core.compendium.results import results_dir
from geomtl_core.compendium.run_eval import evaluate_run, score_retrieval
from geomtl_core.compendium.run_key import cache_key, code_fingerprint, data_fingerprint
from geomtl_core.compendium.statistics import seed_summary
from geomtl_core.config import deep_merge
from geomtl_core.files import model_file, swap_folder
from geomtl_core.models.bundle import write_json_atomic

from filelock import FileLock


def seed_run_name(name: str, seed: int, seeds: list[int]) -> str:
    """The run of one seed: the first seed keeps the experiment's name, the others get ``.s<seed>``."""
    return name if seed == seeds[0] else f"{name}.s{seed}"


def fold_run_name(name: str, fold: int | None) -> str:
    """The run of one cross-validation fold: ``None`` (the scale's split) keeps the name, fold j gets ``.k<j>``."""
    return name if fold is None else f"{name}.k{fold}"


@dataclass(frozen=True, eq=False)
class RunUnit:
    """One unit of work: a training run (experiment, seed, cross-validation fold) with its config overrides,
    trained and evaluated by :func:`run_once` into ``runs/<scale>/<name>``."""

    name: str
    scale: str
    overrides: dict
    experiment: str
    seed: int
    fold: int | None = None  # None: the scale's split

    def task(self, root: Path) -> tuple:
        """The picklable call an executor runs."""
        return run_once, (self.name, self.scale, self.overrides, Path(root), 0)

    def cached(self, root: Path) -> bool:
        """Whether the run cache already holds this run with its current key (nothing to train)."""
        cfg = experiment_config(self.scale, {"name": self.name, **self.overrides}, root)
        key = cache_key(cfg, root=root)
        out = Path(root) / "runs" / self.scale / self.name
        return _cached(results_dir(self.scale, root) / f"{self.name}.json", out, key) is not None


def experiment_units(name: str, scale: str, overrides: dict | None = None, root: Path | None = None,
                     folds: list[int] | None = None, seed_overrides: dict[int, dict] | None = None) -> list[RunUnit]:
    """The runs of one experiment: every seed of the experiment (the scale's, or the A/A cell's own,
    :func:`geomtl_core.compendium.design.experiment_seeds`) on the scale's split and, with ``folds``, on each
    other fold (the last fold of :func:`ensure_folds` is the split itself); the scale's retrieval cells score
    the hybrid too on the split (:func:`geomtl_core.compendium.design.retrieval_overrides`; exploratory rows, so
    not on the other folds). Composing them reads and writes nothing: the folds are written where runs train
    (:func:`train_units`, :func:`run`)."""
    from geomtl_core.compendium.design import experiment_seeds, retrieval_overrides
    from geomtl_core.data.folds import fold_overrides, fold_seed

    seeds = experiment_seeds(scale, name)
    k = fold_count(scale) if folds else 0
    plan = {None: retrieval_overrides(scale, name)} | {j: fold_overrides(j) for j in (folds or []) if j != k - 1}
    return [RunUnit(seed_run_name(fold_run_name(name, j), s, seeds), scale,
                    deep_merge(deep_merge(deep_merge(overrides or {}, fold_over), {"train": {"seed": fold_seed(s, j)}}),
                               (seed_overrides or {}).get(s, {})), name, s, j)
            for j, fold_over in plan.items() for s in seeds]


def train_units(units: list[RunUnit], root: Path | None = None, executor=None) -> None:
    """Train every unit not yet cached, on ``executor`` (:class:`geomtl_core.compendium.executors.Executor`; from
    the environment by default); runs that still fail after their retries are reported together, after the
    others have finished."""
    from geomtl_core.compendium.executors import Executor

    root = find_root() if root is None else Path(root)
    executor = executor or Executor.from_env()
    todo = [u for u in units if not u.cached(root)]
    if not todo:
        return
    for scale in dict.fromkeys(u.scale for u in todo if u.fold is not None):
        ensure_folds(scale, root)
    out = executor.run([u.task(root) for u in todo], desc=f"{len(todo)} runs")
    failed = [(u.name, r) for u, r in zip(todo, out, strict=True) if isinstance(r, BaseException)]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(todo)} runs failed after their retries: "
                           + "; ".join(f"{n}: {type(e).__name__}: {e}" for n, e in failed))


def run(name: str, scale: str, overrides: dict | None = None, root: Path | None = None, verbose: int = 0,
        folds: list[int] | None = None, seed_overrides: dict[int, dict] | None = None) -> dict:
    """Train (or reuse) the experiment once per seed of the scale, evaluate each on test, and return the
    first seed's result with ``seeds`` (per-seed run names) and ``seed_summary`` (mean, sd across seeds and
    a seeds-then-blocks bootstrap CI per threshold); written to ``results/<scale>/<name>.json``. With ``folds``
    (cross-validation folds of :func:`ensure_folds`) every seed also trains on each fold, the last fold (k − 1)
    being the scale's split itself; ``folds`` then maps fold -> seed -> run and ``cv_summary`` pools them.
    ``seed_overrides``: more overrides for one seed's runs (e.g. the seed's base model to start from).
    Training logs go to each run's ``history.csv``, not to the notebook (``verbose=2``: one line per epoch too)."""
    root = find_root() if root is None else Path(root)
    units = experiment_units(name, scale, overrides, root, folds, seed_overrides)
    if folds:
        ensure_folds(scale, root)
    results = {(u.fold, u.seed): run_once(u.name, scale, u.overrides, root, verbose) for u in units}
    seeds = list(dict.fromkeys(u.seed for u in units))
    names: dict[int | None, dict[int, str]] = {}
    for u in units:
        names.setdefault(u.fold, {})[u.seed] = u.name
    head = dict(results[None, seeds[0]])
    head["seeds"] = {str(s): names[None][s] for s in seeds}
    runs_dir = root / "runs" / scale
    head["seed_summary"] = seed_summary([runs_dir / r / "predictions_test.csv" for r in head["seeds"].values()])
    if folds:
        k = fold_count(scale)
        head["folds"] = {str(k - 1 if j is None else j): {str(s): n for s, n in by_seed.items()}
                         for j, by_seed in names.items()}
        head["cv_summary"] = seed_summary([[runs_dir / names[j][s] / "predictions_test.csv" for j in names]
                                           for s in seeds])
        head["cv_summary"]["n_folds"] = len(names)
    write_json_atomic(head, results_dir(scale, root) / f"{name}.json")
    return head


def _cached(result_path: Path, out: Path, key: str) -> dict | None:
    """The cached result of a run when its key matches and its model is there."""
    if result_path.exists() and model_file(out) is not None:
        old = json.loads(result_path.read_text())
        if old.get("run_key") == key:
            return old
    return None


def run_once(name: str, scale: str, overrides: dict | None, root: Path, verbose: int = 0) -> dict:
    """Train (or reuse) ``runs/<scale>/<name>``, evaluate on test, write ``results/<scale>/<name>.json``.

    Under ``runs/<scale>/.<name>.lock``: a valid cached result is returned; otherwise the run trains into
    ``runs/<scale>/<name>.partial`` (resumed from its checkpoints when an interrupted run of the same key left
    it), is evaluated there, and replaces the old folder by renames; the result file is written atomically.
    """
    from geomtl_core.models.bundle import load_bundle
    from geomtl_core.training.trainer import fit

    root = find_root() if root is None else Path(root)
    cfg = experiment_config(scale, {"name": name, **(overrides or {})}, root)
    out = root / "runs" / scale / name
    result_path = results_dir(scale, root) / f"{name}.json"
    code, data = code_fingerprint(), data_fingerprint(cfg)
    key = cache_key(cfg, code, data, root)
    if (hit := _cached(result_path, out, key)) is not None:
        return hit
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(out.parent / f".{out.name}.lock"):
        if (hit := _cached(result_path, out, key)) is not None:  # another process trained it meanwhile
            return hit
        staging = out.with_name(out.name + ".partial")
        key_file = staging / "run_key.txt"
        resume = (staging / "checkpoints" / "state.json").exists() and key_file.exists() and \
            key_file.read_text() == key
        if staging.exists() and not resume:
            shutil.rmtree(staging)
        staging.mkdir(parents=True, exist_ok=True)
        key_file.write_text(key)
        start = time.perf_counter()
        trained = fit(cfg, staging, resume=resume, verbose=verbose, heads_only=True)  # publish saves it whole
        metrics = trained.metrics
        bundle = trained.bundle or load_bundle(staging)  # the trained model as it is in memory: no reload
        t0 = time.perf_counter()
        test = evaluate_run(staging, cfg, "test", bundle)
        test_time = time.perf_counter() - t0
        retrieval = score_retrieval(staging, cfg, test, bundle) if cfg.train.retrieval else None
        result = {
            "name": name, "scale": scale, "run_key": key, "code_fingerprint": code, "data_fingerprint": data,
            "config": cfg.to_dict(),
            "train_time_s": metrics["train_time_s"], "wall_time_s": round(time.perf_counter() - start, 1),
            "train_images": metrics["train_images"], "geo_labelled_images": metrics.get("geo_labelled_images"),
            "params": metrics["params"], "val": metrics["val"], "test": test,
            "test_ms_per_image": round(1000 * test_time / max(test["n"], 1), 4),
            "git_commit": git_commit(root), "versions": package_versions(),
        }
        if retrieval is not None:
            result["retrieval"] = retrieval
        result = json.loads(json.dumps(result).replace(str(staging), str(out)))  # files as published
        swap_folder(staging, out)
        write_json_atomic(result, result_path)
        return result
