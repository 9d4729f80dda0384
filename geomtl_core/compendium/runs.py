"""Running and caching experiments: the scale's proxy data and base config, and training runs that are reused
while nothing they depend on has changed.

A run is keyed by its resolved config, a fingerprint of the library code that trains **and evaluates** it
(every module but the presentation ones, :data:`PRESENTATION_MODULES`), and a fingerprint of the data it
reads. A run is trained under a lock into a staging folder and published by an atomic rename, so two
processes asking for the same run get one training and the same result, and a process killed mid-run leaves
no half result (its staging folder is resumed, or replaced when its key differs).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from geomtl_core.compendium.project import find_root, git_commit, package_versions
from geomtl_core.compendium.results import results_dir
from geomtl_core.compendium.scales import scale_params
from geomtl_core.compendium.statistics import seed_summary
from geomtl_core.config import ExperimentConfig, deep_merge
from geomtl_core.files import swap_folder
from geomtl_core.models.bundle import write_json_atomic

from filelock import FileLock

if TYPE_CHECKING:
    from geomtl_core.data.proxy.export import ProxyConfig
    from geomtl_core.models.bundle import Bundle

    import pandas as pd


def data_dir(scale: str, root: Path | None = None) -> Path:
    """``data/proxy_<n>_<size>px_<fov>km``: the proxy export of a scale."""
    root = find_root() if root is None else Path(root)
    p = scale_params(scale)
    return root / "data" / f"proxy_{p['n'] or 'all'}_{p['size']}px_{int(p['fov_km'])}km"


def benchmark_of(scale: str, root: Path | None = None) -> str | None:
    """The benchmark version of the scale's proxy export (``proxy.json``; exports from before versions were
    recorded are the overlapping split), None while there is no export: the column results rows carry."""
    from geomtl_core.errors import InputError

    try:
        info = data_dir(scale, root) / "proxy.json"
    except InputError:  # a scale of the caller's own (tests, hand-made results): no export to name
        return None
    if not info.exists():
        return None
    return json.loads(info.read_text()).get("benchmark") or "overlap-50km-v0"


def ensure_proxy(scale: str, root: Path | None = None, progress: bool = True) -> Path:
    """The proxy export of a scale (built once, reused while its proxy.json matches; built under a lock)."""
    from dataclasses import asdict

    from geomtl_core.data.proxy.export import export_proxy

    root = find_root() if root is None else Path(root)
    cfg = proxy_config(scale)
    out = data_dir(scale, root)
    info = out / "proxy.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(out.parent / f".{out.name}.lock"):
        if info.exists() and json.loads(info.read_text()).get("config") == json.loads(json.dumps(asdict(cfg))):
            return out
        export_proxy(out, cfg, progress=progress)
    return out


def _fold_count(fractions: list[float] | tuple[float, ...]) -> int:
    """k of the k-fold cross-validation whose last fold is a split of these fractions, (1 − 2/k, 1/k, 1/k)."""
    k = round(1 / fractions[2])
    if not all(abs(a - b) < 1e-9 for a, b in zip(fractions, (1 - 2 / k, 1 / k, 1 / k), strict=True)):
        raise ValueError(f"split fractions {list(fractions)} are not (1 - 2/k, 1/k, 1/k): the export's split is not "
                         "a fold of a k-fold cross-validation")
    return k


def proxy_config(scale: str) -> ProxyConfig:
    """The :class:`~geomtl_core.data.proxy.export.ProxyConfig` a scale's proxy is exported with."""
    from geomtl_core.data.proxy.export import ProxyConfig

    p = scale_params(scale)
    return ProxyConfig(n=p["n"], size=p["size"], fov_km=p["fov_km"])


def fold_count(scale: str) -> int:
    """How many spatial folds :func:`ensure_folds` cuts the scale's export into (nothing read or written)."""
    return _fold_count(proxy_config(scale).fractions)


@dataclass(frozen=True)
class ExportSizes:
    """What planning needs from a scale's proxy export: the training split's size, its share of each class of the
    individual scene networks' task (:data:`~geomtl_core.compendium.design.ISN_TASK`), and the number of folds.
    ``source``: ``export`` (read from it) or ``computed`` (from the proxy's locations and labels, split as the
    export splits them; nothing written)."""

    train_images: int
    isn_shares: dict[int, float]
    k: int
    source: str


def export_sizes(scale: str, root: Path | None = None) -> ExportSizes:
    """The export's sizes (:class:`ExportSizes`), read from the scale's export when it is there with the config
    :func:`ensure_proxy` exports, else computed without writing anything (once per scale in a process)."""
    from dataclasses import asdict

    from geomtl_core.compendium.design import ISN_TASK
    from geomtl_core.data.loaders import load_meta

    root = find_root() if root is None else Path(root)
    info = data_dir(scale, root) / "proxy.json"
    if info.exists() and (info.parent / "train.csv").exists() and \
            json.loads(info.read_text()).get("config") == json.loads(json.dumps(asdict(proxy_config(scale)))):
        train = load_meta(experiment_config(scale, root=root), "train")
        return ExportSizes(len(train), _shares(train[ISN_TASK]), fold_count(scale), "export")
    return _computed_sizes(scale)


@functools.lru_cache(maxsize=4)
def _computed_sizes(scale: str) -> ExportSizes:
    """:func:`export_sizes` without the export: the proxy's locations split as the export splits them."""
    from geomtl_core.compendium.design import ISN_TASK
    from geomtl_core.data.metadata import SCENE_COLUMNS
    from geomtl_core.data.proxy.export import labelled_locations, metadata_table

    locs = labelled_locations(proxy_config(scale))
    train = metadata_table(locs[locs["split"] == "train"])
    column = {v: c for c, v in SCENE_COLUMNS.items()}[ISN_TASK]
    return ExportSizes(len(train), _shares(train[column]), fold_count(scale), "computed")


def _shares(labels: pd.Series) -> dict[int, float]:
    """Share of each class among ``labels``, by class."""
    counts = labels.value_counts(normalize=True).sort_index()
    return {int(k): float(v) for k, v in counts.items()}


def ensure_folds(scale: str, root: Path | None = None) -> int:
    """The spatial cross-validation folds of the scale's proxy export (:func:`geomtl_core.data.folds.write_folds`,
    with the export's seed, cells, buffer and block cap); returns k, the number of folds, whose last fold is
    the export's own split."""
    from geomtl_core.data.folds import write_folds

    cfg = json.loads((ensure_proxy(scale, root, progress=False) / "proxy.json").read_text())["config"]
    k = _fold_count(cfg["fractions"])
    write_folds(data_dir(scale, root), k, cfg["seed"], cfg["split_grid_deg"], cfg["buffer_km"],
                cfg["max_block_share"])
    return k


def experiment_config(scale: str, overrides: dict | None = None, root: Path | None = None) -> ExperimentConfig:
    """The scale's base config (frozen backbone, ImageNet-pretrained at default/full, on
    cached features, 3 partitionings, no scene task) with nested ``overrides`` applied."""
    root = find_root() if root is None else Path(root)
    p = scale_params(scale)
    base = {
        "name": "base",
        "data": {"root": str(data_dir(scale, root)), "image_size": p["size"], "scene_tasks": [],
                 "workers": p["workers"], "cache_dir": str(root / "data" / "cache")},
        "partition": {"tau_min": p["tau_min"], "tau_max": p["tau_max"]},
        "model": {"backbone": p["backbone"], "pretrained": p["pretrained"], "freeze_backbone": True,
                  "neck_units": 512, "dropout": 0.3},
        "train": {"epochs": p["epochs"], "batch_size": p["batch"], "optimizer": "adamw", "lr": p.get("lr", 1e-3),
                  "weight_decay": 1e-4, "schedule": "cosine", "seed": 0,
                  "checkpoint_every_s": p.get("checkpoint_every_s", 0.0)},
    }
    return ExperimentConfig.from_dict(deep_merge(base, overrides or {}))


PRESENTATION_MODULES = (
    "cli/", "inference/predict.py", "inference/maps.py", "inference/geocode.py", "geo/basemap.py",
    "compendium/plots.py", "compendium/proxy_plots.py", "compendium/tables.py", "compendium/prose.py",
    "compendium/publish.py", "compendium/runner.py", "compendium/verdict.py", "compendium/calibration.py",
)
"""Library paths that only present results: no module that computes a cached number imports them (a test
checks), so their edits never change a trained run or its test metrics. Everything else is fingerprinted."""

PACKAGE = Path(__file__).resolve().parents[1]


def _without_docstrings(tree: ast.AST) -> ast.AST:
    """``tree`` with every statement that is a bare string constant removed: the docstrings of the module, its
    classes and functions, and the attribute docstrings after an assignment (none of them runs)."""
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if isinstance(body, list):
                body[:] = [s for s in body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
                                                   and isinstance(s.value.value, str))]
    return tree


@functools.lru_cache(maxsize=1024)
def _syntax_digest(source: bytes) -> str:
    """sha256 of a module's syntax tree without docstrings: what it computes, not how its text is laid out
    (comments, docstrings, blank lines, line breaks, quotes and spacing leave it unchanged)."""
    tree = _without_docstrings(ast.parse(source))
    return hashlib.sha256(ast.dump(tree, annotate_fields=False, include_attributes=False).encode()).hexdigest()


def code_fingerprint(package: Path = PACKAGE) -> str:
    """sha256 over the syntax (:func:`_syntax_digest`: comments and docstrings left out) of every library module
    that can change a run or its cached numbers, so that editing a comment or a docstring retrains nothing."""
    h = hashlib.sha256()
    for f in sorted(package.rglob("*.py")):
        rel = f.relative_to(package).as_posix()
        if rel.startswith(PRESENTATION_MODULES):
            continue
        h.update(rel.encode())
        h.update(_syntax_digest(f.read_bytes()).encode())
    return h.hexdigest()[:16]


def data_fingerprint(cfg: ExperimentConfig) -> str:
    """sha256 over what a run reads besides images: the metadata CSVs of its splits and ``proxy.json``
    (which pins the image export's config and assets); missing files hash as absent."""
    from geomtl_core.data.loaders import split_paths

    h = hashlib.sha256()
    root = Path(cfg.data.root)
    for f in [split_paths(cfg, s)[1] for s in ("train", "val", "test")] + [root / "proxy.json"]:
        h.update(f.name.encode())
        h.update(f.read_bytes() if f.exists() else b"<absent>")
    return h.hexdigest()[:16]


def cache_key(cfg: ExperimentConfig, code: str | None = None, data: str | None = None,
              root: Path | None = None) -> str:
    """What a cached run depends on: its config (paths inside the project ``root`` written relative to it, so a
    moved or cloned project keeps its runs), the library code and the data it reads."""
    prefix = str(Path(find_root() if root is None else root).resolve()) + "/"
    config = json.loads(json.dumps(cfg.to_dict()).replace(json.dumps(prefix)[1:-1], "<project>/"))
    parts = [config, code or code_fingerprint(), data or data_fingerprint(cfg)]
    if cfg.train.init_from:  # the model it starts from: retrained, it makes this a different run
        parts.append(hashlib.sha256((Path(cfg.train.init_from) / "model.keras").read_bytes()).hexdigest())
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


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
    if result_path.exists() and (out / "model.keras").exists():
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
        trained = fit(cfg, staging, resume=resume, verbose=verbose)
        metrics = trained.metrics
        bundle = trained.bundle or load_bundle(staging)  # the trained model as it is in memory: no reload
        t0 = time.perf_counter()
        test = evaluate_run(staging, cfg, "test", bundle)
        test_time = time.perf_counter() - t0
        retrieval = _retrieval(staging, cfg, test, bundle) if cfg.train.retrieval else None
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


def _retrieval(staging: Path, cfg: ExperimentConfig, test: dict, bundle: Bundle | None = None) -> dict:
    """The hybrid and kNN predictors of a run on cached features (:func:`geomtl_core.inference.hybrid.hybrid_for_run`):
    their test summaries join ``test["methods"]`` (compared like any other method of the run); returns the
    settings chosen on validation, gallery size and timings."""
    from geomtl_core.inference.hybrid import hybrid_for_run

    res = hybrid_for_run(staging, cfg, bundle=bundle)
    test["methods"] |= res.pop("methods")
    test.setdefault("prediction_files", {}).update({m: str(staging / f) for m, f in res["prediction_files"].items()})
    return res


def evaluate_run(out: Path, cfg: ExperimentConfig, split: str, bundle: Bundle | None = None) -> dict:
    """Test metrics of a bundle (from cached features when its backbone is frozen and cached); ``bundle``: the
    one in ``out`` already in memory (default: loaded from it)."""
    from dataclasses import replace

    from geomtl_core.data.dataset import make_loader
    from geomtl_core.data.features import FeatureDataset, extract_features, feature_cache_path, uses_cached_features
    from geomtl_core.data.loaders import load_tables, split_loader
    from geomtl_core.inference.evaluation import evaluate_split
    from geomtl_core.models.bundle import load_bundle

    bundle = load_bundle(out) if bundle is None else bundle
    data = split_loader(cfg, split, load_tables(cfg, (split,))[split], bundle.parts, train=False)
    hierarchy = bundle.hierarchy if cfg.partition.hierarchical else None
    csv = out / f"predictions_{split}.csv"
    fixes = json.loads((out / "remedies.json").read_text()) if (out / "remedies.json").exists() else None
    if not uses_cached_features(cfg):
        return evaluate_split(bundle.model, data, bundle.parts, hierarchy, csv, progress=False, remedies=fixes)
    feats = extract_features(bundle.model, data.dataset, feature_cache_path(cfg, split), workers=cfg.data.workers,
                             progress=False)
    loader = make_loader(FeatureDataset(feats, data.labels.targets), 512, seed=cfg.train.seed)
    return evaluate_split(bundle.model, replace(data, loader=loader), bundle.parts, hierarchy, csv,
                          progress=False, from_features=True, remedies=fixes)
