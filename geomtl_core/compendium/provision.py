"""A scale's data and the base config that reads it: the proxy export (built once, under a lock), its spatial
cross-validation folds, the sizes planning needs (read from the export, or computed without writing it), and
:func:`experiment_config`, the scale's base config with a run's overrides."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from geomtl_core.compendium.project import find_root
from geomtl_core.compendium.scales import scale_params
from geomtl_core.config import ExperimentConfig, deep_merge

from filelock import FileLock

if TYPE_CHECKING:
    from geomtl_core.data.proxy.export import ProxyConfig

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
