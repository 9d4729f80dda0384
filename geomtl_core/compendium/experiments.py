"""What the notebooks call: named scales, the proxy data per scale, cached training runs, and
test-set results written to ``results/<scale>/<name>.json`` (the book's summary reads them).

A run is keyed by its resolved config, a fingerprint of the library code that trains and evaluates
it, and a fingerprint of the data it reads: rerunning a notebook with nothing changed reuses the
trained bundle; a changed config, library function or dataset retrains from scratch into the same
folder. The result file records both fingerprints.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

from geomtl_core.compendium.runner import find_root, git_commit, package_versions
from geomtl_core.compendium.scales import SCALES, scale_params
from geomtl_core.config import ExperimentConfig, deep_merge

import numpy as np


def __getattr__(name: str):
    """``ROOT``: the project root of the working directory (see :func:`geomtl_core.compendium.runner.find_root`)."""
    if name == "ROOT":
        return find_root()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def data_dir(scale: str, root: Path | None = None) -> Path:
    root = find_root() if root is None else Path(root)
    p = scale_params(scale)
    return root / "data" / f"proxy_{p['n'] or 'all'}_{p['size']}px_{int(p['fov_km'])}km"


def ensure_proxy(scale: str, root: Path | None = None, progress: bool = True) -> Path:
    """The proxy export of a scale (built once, reused while its proxy.json matches)."""
    root = find_root() if root is None else Path(root)
    from dataclasses import asdict

    from geomtl_core.data.proxy.export import ProxyConfig, export_proxy

    p = scale_params(scale)
    cfg = ProxyConfig(n=p["n"], size=p["size"], fov_km=p["fov_km"])
    out = data_dir(scale, root)
    info = out / "proxy.json"
    if info.exists() and json.loads(info.read_text()).get("config") == json.loads(json.dumps(asdict(cfg))):
        return out
    export_proxy(out, cfg, progress=progress)
    return out


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
                  "weight_decay": 1e-4, "schedule": "cosine", "seed": 0},
    }
    return ExperimentConfig.from_dict(deep_merge(base, overrides or {}))


PRESENTATION_MODULES = (
    "compendium/", "cli/", "inference/predict.py", "inference/maps.py", "inference/geocode.py", "geo/basemap.py",
)
"""Library paths that only present results (their edits never change a trained run)."""

PACKAGE = Path(__file__).resolve().parents[1]


def code_fingerprint(package: Path = PACKAGE) -> str:
    """sha256 over the source of every library module that can change a run (all but the presentation ones)."""
    h = hashlib.sha256()
    for f in sorted(package.rglob("*.py")):
        rel = f.relative_to(package).as_posix()
        if rel.startswith(PRESENTATION_MODULES):
            continue
        h.update(rel.encode())
        h.update(f.read_bytes())
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


def run_key(cfg: ExperimentConfig, code: str | None = None, data: str | None = None,
            root: Path | None = None) -> str:
    """What a cached run depends on: its config (paths inside the project ``root`` written relative to it, so a
    moved or cloned project keeps its runs), the library code and the data it reads."""
    prefix = str(Path(find_root() if root is None else root).resolve()) + "/"
    config = json.loads(json.dumps(cfg.to_dict()).replace(json.dumps(prefix)[1:-1], "<project>/"))
    parts = [config, code or code_fingerprint(), data or data_fingerprint(cfg)]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def seed_run_name(name: str, seed: int, seeds: list[int]) -> str:
    """The run of one seed: the first seed keeps the experiment's name, the others get ``.s<seed>``."""
    return name if seed == seeds[0] else f"{name}.s{seed}"


def run(name: str, scale: str, overrides: dict | None = None, root: Path | None = None, verbose: int = 0) -> dict:
    """Train (or reuse) the experiment once per seed of the scale, evaluate each on test, and return the
    first seed's result with ``seeds`` (per-seed run names) and ``seed_summary`` (mean, sd across seeds and
    a seeds-then-blocks bootstrap CI per threshold); written to ``results/<scale>/<name>.json``. Training
    logs go to each run's ``history.csv``, not to the notebook (``verbose=2``: one line per epoch too)."""
    root = find_root() if root is None else Path(root)
    seeds = list(scale_params(scale).get("seeds", [0]))
    results = {s: run_once(seed_run_name(name, s, seeds), scale, deep_merge(overrides or {}, {"train": {"seed": s}}),
                           root, verbose) for s in seeds}
    head = dict(results[seeds[0]])
    head["seeds"] = {str(s): seed_run_name(name, s, seeds) for s in seeds}
    head["seed_summary"] = seed_summary(scale, name, root, head["seeds"])
    (root / "results" / scale / f"{name}.json").write_text(json.dumps(head, indent=2))
    return head


def seed_predictions(scale: str, name: str, root: Path | None = None, method: str | None = None) -> list[Path]:
    """Per-image test prediction files of an experiment, one per seed (``method``: a per-method file)."""
    root = find_root() if root is None else Path(root)
    res = json.loads((root / "results" / scale / f"{name}.json").read_text())
    runs = list(res.get("seeds", {"0": name}).values())
    stem = "predictions_test" if method is None else f"predictions_test.{method}"
    return [root / "runs" / scale / r / f"{stem}.csv" for r in runs]


def seed_summary(scale: str, name: str, root: Path, seeds: dict[str, str], n_boot: int = 1000) -> dict:
    """Accuracy per threshold across seeds: mean, sd (ddof 1) and a 95% CI resampling seeds, then 5-degree
    blocks of the test locations (:func:`geomtl_core.geo.stats.hierarchical_bootstrap`)."""
    from geomtl_core.compendium.report import seed_hits
    from geomtl_core.geo.metrics import THRESHOLDS_KM
    from geomtl_core.geo.stats import block_bootstrap, hierarchical_bootstrap, percentile_ci

    files = [root / "runs" / scale / r / "predictions_test.csv" for r in seeds.values()]
    hits, blocks = seed_hits(files)
    per_seed = hits.mean(axis=1)  # (S, T)
    reps = hierarchical_bootstrap(hits, blocks, n_boot=n_boot) if len(files) > 1 else \
        block_bootstrap(hits[0], blocks, n_boot=n_boot)
    ci = percentile_ci(reps)
    sd = per_seed.std(axis=0, ddof=1) if len(files) > 1 else np.zeros(len(THRESHOLDS_KM))
    return {"n_seeds": len(files), "n_blocks": int(blocks.max()) + 1, "n": int(hits.shape[1]),
            **{f"acc_{t}km": {"mean": float(per_seed[:, k].mean()), "sd": float(sd[k]),
                              "ci95": [float(ci[k, 0]), float(ci[k, 1])]} for k, t in enumerate(THRESHOLDS_KM)}}


def run_once(name: str, scale: str, overrides: dict | None, root: Path, verbose: int) -> dict:
    """Train (or reuse) ``runs/<scale>/<name>``, evaluate on test, write ``results/<scale>/<name>.json``."""
    root = find_root() if root is None else Path(root)
    from geomtl_core.training.trainer import train

    cfg = experiment_config(scale, {"name": name, **(overrides or {})}, root)
    out = root / "runs" / scale / name
    result_path = root / "results" / scale / f"{name}.json"
    code, data = code_fingerprint(), data_fingerprint(cfg)
    key = run_key(cfg, code, data, root)
    if result_path.exists() and (out / "model.keras").exists():
        old = json.loads(result_path.read_text())
        if old.get("run_key") == key:
            return old
    if out.exists():
        shutil.rmtree(out)  # a different config: never mix runs in one folder
    start = time.perf_counter()
    metrics = train(cfg, out, verbose=verbose)
    test = evaluate_run(out, cfg, "test")
    result = {
        "name": name, "scale": scale, "run_key": key, "code_fingerprint": code, "data_fingerprint": data,
        "config": cfg.to_dict(),
        "train_time_s": metrics["train_time_s"], "wall_time_s": round(time.perf_counter() - start, 1),
        "train_images": metrics["train_images"], "geo_labelled_images": metrics.get("geo_labelled_images"),
        "params": metrics["params"], "val": metrics["val"], "test": test,
        "git_commit": git_commit(root), "versions": package_versions(),
    }
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(result, indent=2))
    return result


def evaluate_run(out: Path, cfg: ExperimentConfig, split: str) -> dict:
    """Test metrics of a bundle (from cached features when its backbone is frozen and cached)."""
    from geomtl_core.data.dataset import make_loader
    from geomtl_core.data.features import FeatureDataset, extract_features
    from geomtl_core.data.loaders import load_tables, split_loader
    from geomtl_core.inference.evaluation import evaluate_split
    from geomtl_core.models.bundle import load_bundle
    from geomtl_core.training.trainer import feature_cache_path, uses_cached_features


    bundle = load_bundle(out)
    data = split_loader(cfg, split, load_tables(cfg, (split,))[split], bundle.parts, train=False)
    hierarchy = bundle.hierarchy if cfg.partition.hierarchical else None
    csv = out / f"predictions_{split}.csv"
    fixes = json.loads((out / "remedies.json").read_text()) if (out / "remedies.json").exists() else None
    if not uses_cached_features(cfg):
        return evaluate_split(bundle.model, data, bundle.parts, hierarchy, csv, progress=False, remedies=fixes)
    feats = extract_features(bundle.model, data.dataset, feature_cache_path(cfg, split), workers=cfg.data.workers,
                             progress=False)
    loader = make_loader(FeatureDataset(feats, data.labels.targets), 512, seed=cfg.train.seed)
    from dataclasses import replace

    return evaluate_split(bundle.model, replace(data, loader=loader), bundle.parts, hierarchy, csv,
                          progress=False, from_features=True, remedies=fixes)


def load_results(scale: str, root: Path | None = None) -> dict[str, dict]:
    """Every experiment's result JSON of a scale, by experiment name (the extra seeds' runs are inside)."""
    import re

    root = find_root() if root is None else Path(root)
    return {p.stem: json.loads(p.read_text()) for p in sorted((root / "results" / scale).glob("*.json"))
            if not re.search(r"\.s\d+$", p.stem)}


def results_table(results: dict[str, dict], method: str | None = None, split: str = "test"):
    """One row per experiment: accuracy (%) at the five thresholds (mean ± sd over seeds when there are
    several), the 95% interval of the primary endpoint (over seeds, then 5-degree blocks), and the first
    seed's median error and GeoScore."""
    from geomtl_core.compendium.report import PRIMARY_KM

    import pandas as pd

    rows = []
    for name, r in results.items():
        res = r[split]
        m = res["methods"][method or res["best"]]
        row = _summary_row(name, m, seeds=1)
        summary = r.get("seed_summary") if split == "test" and method is None else None
        if summary and summary["n_seeds"] > 1:
            row["seeds"] = summary["n_seeds"]
            for t in (1, 25, 200, 750, 2500):
                a = summary[f"acc_{t}km"]
                row[f"{t} km"] = f"{100 * a['mean']:.1f} ± {100 * a['sd']:.1f}"
            lo, hi = summary[f"acc_{PRIMARY_KM}km"]["ci95"]
            row[f"{PRIMARY_KM} km 95% CI"] = f"[{100 * lo:.1f}, {100 * hi:.1f}]"
        rows.append(row)
    return pd.DataFrame(rows).set_index("experiment")


def _summary_row(label: str, m: dict, seeds: int) -> dict:
    """One table row of a single summary: accuracy % per threshold, the primary endpoint's 95% block CI,
    median km and GeoScore."""
    from geomtl_core.compendium.report import PRIMARY_KM

    row: dict = {"experiment": label, "seeds": seeds}
    for t in (1, 25, 200, 750, 2500):
        row[f"{t} km"] = f"{100 * m[f'acc_{t}km']:.1f}"
    lo, hi = m[f"acc_{PRIMARY_KM}km_ci95"]
    row[f"{PRIMARY_KM} km 95% CI"] = f"[{100 * lo:.1f}, {100 * hi:.1f}]"
    return row | {"median km": round(m["median_km"]), "GeoScore": round(m["geoscore"])}


def baselines(scale: str, root: Path | None = None) -> dict[str, dict]:
    """The reference points of a scale on its test split (:mod:`geomtl_core.geo.baselines`), as summary
    dicts with block CIs: prior, best single point, label-only (S3, S16), kNN on the frozen backbone's
    features (those of the ``st_hier`` run, trained first if needed), and both oracles of the finest
    partitioning. Cached in ``results/<scale>/baselines/baselines.json`` while code and data are unchanged."""
    from geomtl_core.data.features import cached_features
    from geomtl_core.data.loaders import load_meta, make_partitionings
    from geomtl_core.geo import baselines as B
    from geomtl_core.training.trainer import feature_cache_path

    root = find_root() if root is None else Path(root)
    cfg = experiment_config(scale, root=root)
    import inspect

    own = hashlib.sha256(inspect.getsource(baselines).encode()).hexdigest()[:8]  # this function's own code
    key = run_key(cfg, code_fingerprint() + own, data_fingerprint(cfg), root)
    path = root / "results" / scale / "baselines" / "baselines.json"
    if path.exists() and json.loads(path.read_text()).get("key") == key:
        return json.loads(path.read_text())["baselines"]
    from geomtl_core.compendium.grid import AUX, run_named  # (grid builds on this module)

    run_named("st_hier", scale, AUX["st"], root)  # its frozen backbone's features are the kNN space
    train, test = load_meta(cfg, "train"), load_meta(cfg, "test")
    parts = make_partitionings(cfg, train)
    tl, tn, lat, lon = (x.to_numpy() for x in (train.lat, train.lon, test.lat, test.lon))
    # kNN's gallery: the training images st_hier trains on (inside every partitioning's cells), so the
    # baseline does not depend on which other runs added features to the shared cache
    usable = np.logical_and.reduce([p.assign(tl, tn) >= 0 for p in parts])
    f_train, found = cached_features(feature_cache_path(cfg, "train"), train.img_id.to_numpy()[usable])
    if not found.all():
        raise FileNotFoundError(f"no cached features for {int((~found).sum())} training images; rerun st_hier")
    in_train = np.flatnonzero(usable)
    f_test, in_test = cached_features(feature_cache_path(cfg, "test"), test.img_id.to_numpy())
    if not in_test.all():
        raise FileNotFoundError(f"no cached features for {int((~in_test).sum())} test images; rerun st_hier")
    out = {
        "prior (most populated cell)": B.prior_baseline(parts[-1], lat, lon, with_ci=True),
        "best single point": B.single_point_baseline(tl, tn, lat, lon, with_ci=True),
        "label only (S3)": B.label_only_baseline(tl, tn, train.s3.to_numpy(), test.s3.to_numpy(), lat, lon, True),
        "label only (S16)": B.label_only_baseline(tl, tn, train.s16.to_numpy(), test.s16.to_numpy(), lat, lon, True),
        "kNN (frozen features)": B.knn_baseline(f_train, tl[in_train], tn[in_train], f_test, lat, lon, with_ci=True),
        "true-cell oracle": B.true_cell_oracle(parts[-1], lat, lon, with_ci=True),
        "nearest-cell-mean oracle": B.nearest_cell_oracle(parts[-1], lat, lon, with_ci=True),
    }
    out = {k: v.to_json_dict() for k, v in out.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "partitioning": parts[-1].name, "baselines": out}, indent=2))
    return out


def baselines_table(scale: str, root: Path | None = None):
    """The baselines as rows in the layout of :func:`results_table` (one summary each, block CI)."""
    import pandas as pd

    rows = [_summary_row(f"baseline: {name}", m, seeds=0) for name, m in baselines(scale, root).items()]
    return pd.DataFrame(rows).set_index("experiment")


def publish_bundle(scale: str, name: str = "mtl_s3", dest: Path | None = None, root: Path | None = None) -> Path:
    """Copy a trained run (without its checkpoints) to ``models/default`` for ``geomtl predict``."""
    root = find_root() if root is None else Path(root)
    src = root / "runs" / scale / name
    if not (src / "model.keras").exists():
        raise FileNotFoundError(f"run {name!r} at scale {scale!r} has no model at {src}; run `make book` first")
    dest = dest or root / "models" / "default"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("checkpoints", "*.tmp*"))
    return dest


def main(argv: list[str] | None = None) -> int:
    """``python -m geomtl_core.compendium.experiments --publish NAME --scale SCALE`` (used by ``make book``)."""
    import argparse

    p = argparse.ArgumentParser(description="publish a trained experiment as the default model bundle")
    p.add_argument("--scale", default="default", choices=list(SCALES))
    p.add_argument("--publish", default="mtl_s3", help="experiment name (default: mtl_s3)")
    args = p.parse_args(argv)
    print(f"default bundle: {publish_bundle(args.scale, args.publish)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
