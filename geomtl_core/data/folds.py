"""Spatial k-fold cross-validation of an exported benchmark: every location of its train/val/test splits is
tested once, by whole grid cells (:func:`geomtl_core.data.spatial_split.spatial_folds`), with the export's caps
and exclusions per fold: for a proxy export whose ``proxy.json`` asks for it, no training crop of a fold shares
a source pixel with a validation or test crop of that fold. Written beside the export as
``folds/k<j>/{train,val,test}.csv`` with one image folder
``folds/pool`` (links to every shard), so a fold is a config override and no image is copied.

With the export's split fractions ``(1 − 2/k, 1/k, 1/k)`` the last fold is the export's own split (same
rows), so runs on the export's split are fold k − 1 of the cross-validation."""

from __future__ import annotations

import json
import os
from pathlib import Path

from geomtl_core.data.metadata import read_metadata
from geomtl_core.data.spatial_split import spatial_folds
from geomtl_core.errors import InputError
from geomtl_core.files import atomic_path

import numpy as np
import pandas as pd
from filelock import FileLock

SPLITS = ("train", "val", "test")
FOLDS_DIR = "folds"
POOL = "pool"
FOLDS_FORMAT = 2
"""The version of ``folds.json``'s record (2: per-fold leakage figures, the export's own split's from
``proxy.json``); folds written with another are rewritten."""


def fold_overrides(fold: int) -> dict:
    """Config overrides that train and evaluate on fold ``fold`` of :func:`write_folds`' folds."""
    return {"data": {**{s: f"{FOLDS_DIR}/k{fold}/{s}" for s in SPLITS}, "images": f"{FOLDS_DIR}/{POOL}"}}


def fold_seed(seed: int, fold: int | None) -> int:
    """The training seed of seed ``seed`` on fold ``fold`` (None: the export's own split): each fold draws its own
    initialisation and data order, so seed and fold effects are not confounded; both arms of a comparison on one
    fold and seed share it (they stay paired).

    >>> fold_seed(2, None), fold_seed(2, 0), fold_seed(2, 4)
    (2, 1011, 5047)
    """
    return seed if fold is None else seed + 1009 * (fold + 1)


def crop_geometry(root: Path) -> dict | None:
    """``{"fov_km", "size"}`` of a proxy export whose split is pixel-disjoint (its ``proxy.json``), else None."""
    info = Path(root) / "proxy.json"
    if not info.exists():
        return None
    cfg = json.loads(info.read_text()).get("config", {})
    return {"fov_km": cfg["fov_km"], "size": cfg["size"]} if cfg.get("pixel_disjoint") else None


def write_folds(root: Path, k: int, seed: int, grid_deg: float, buffer_km: float, max_block_share: float) -> dict:
    """The folds of the export at ``root`` (written once under a lock, reused while ``folds.json`` matches the
    arguments and the export's CSVs); returns ``folds.json``: the arguments, each fold's split sizes and its
    leakage figures (:func:`geomtl_core.data.leakage.split_diagnostics`)."""
    from geomtl_core.data.leakage import BENCHMARK, split_diagnostics

    root = Path(root)
    out = root / FOLDS_DIR
    crops = crop_geometry(root)
    args = {"format": FOLDS_FORMAT, "k": k, "seed": seed, "grid_deg": grid_deg,
            "buffer_km": buffer_km, "max_block_share": max_block_share,
            "pixel_disjoint": crops, "source": {s: (root / f"{s}.csv").stat().st_size for s in SPLITS}}
    out.mkdir(parents=True, exist_ok=True)
    info = out / "folds.json"
    with FileLock(out / ".folds.lock"):
        if info.exists() and (old := json.loads(info.read_text())).get("args") == args:
            return old
        meta = pd.concat([read_metadata(root / f"{s}.csv") for s in SPLITS], ignore_index=True)
        raw = pd.concat([pd.read_csv(root / f"{s}.csv", dtype=str, keep_default_na=False) for s in SPLITS],
                        ignore_index=True)  # rows as the export wrote them, one per metadata row
        if meta["img_id"].duplicated().any():
            raise InputError(f"{root}: an image id is in more than one split; folds need each image once")
        lat, lon = meta["lat"].to_numpy(), meta["lon"].to_numpy()
        footprints = None
        if crops is not None:
            from geomtl_core.data.proxy.footprints import Footprints

            footprints = Footprints.of_crops(lat, lon, crops["fov_km"], crops["size"])
        codes = spatial_folds(lat, lon, k, seed, grid_deg, buffer_km, max_block_share, overlap=footprints)
        slices = spatial_folds(lat, lon, k, seed, grid_deg, 0.0, 1.0)  # the cells alone: what each fold could train on
        sizes, leakage = {}, {}
        for j in range(k):
            d = out / f"k{j}"
            d.mkdir(exist_ok=True)
            for code, s in enumerate(SPLITS):
                part = raw[codes[j] == code]
                with atomic_path(d / f"{s}.csv") as tmp:
                    part.to_csv(tmp, index=False)
            sizes[str(j)] = {s: int((codes[j] == c).sum()) for c, s in enumerate(SPLITS)}
            shared = None if footprints is None else footprints.shared_with(codes[j] == 0)
            leakage[str(j)] = split_diagnostics(lat, lon, codes[j], slices[j] == 0, shared)
        _link_pool(root, out / POOL)
        own = json.loads((root / "proxy.json").read_text()).get("leakage") if crops is not None else None
        if own:  # fold k - 1 is the export's split: its exclusion was applied to all locations, before the export
            leakage[str(k - 1)].update({x: own[x] for x in ("eligible_train", "dropped_train", "kept_share")})
        result = {"args": args, "benchmark": BENCHMARK if crops is not None else None, "sizes": sizes,
                  "leakage": leakage, "tested_once": bool((np.sum(codes == 2, axis=0) <= 1).all())}
        with atomic_path(info) as tmp:
            tmp.write_text(json.dumps(result, indent=1))
        return result


def _link_pool(root: Path, pool: Path) -> None:
    """``pool/<split>-<shard>`` links to every shard of the export's split folders (relative links)."""
    pool.mkdir(exist_ok=True)
    for old in pool.glob("*.msg"):
        old.unlink()
    for s in SPLITS:
        for f in sorted((root / s).glob("*.msg")):
            (pool / f"{s}-{f.name}").symlink_to(os.path.relpath(f, pool))
