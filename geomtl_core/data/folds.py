"""Spatial k-fold cross-validation of an exported benchmark: every location of its train/val/test splits is
tested once, by whole 2° cells (:func:`geomtl_core.data.spatial_split.spatial_folds`), with the export's caps
and buffer per fold. Written beside the export as ``folds/k<j>/{train,val,test}.csv`` with one image folder
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


def fold_overrides(fold: int) -> dict:
    """Config overrides that train and evaluate on fold ``fold`` of :func:`write_folds`' folds."""
    return {"data": {**{s: f"{FOLDS_DIR}/k{fold}/{s}" for s in SPLITS}, "images": f"{FOLDS_DIR}/{POOL}"}}


def write_folds(root: Path, k: int, seed: int, grid_deg: float, buffer_km: float, max_block_share: float) -> dict:
    """The folds of the export at ``root`` (written once under a lock, reused while ``folds.json`` matches the
    arguments and the export's CSVs); returns ``folds.json``: the arguments and each fold's split sizes."""
    root = Path(root)
    out = root / FOLDS_DIR
    args = {"k": k, "seed": seed, "grid_deg": grid_deg, "buffer_km": buffer_km, "max_block_share": max_block_share,
            "source": {s: (root / f"{s}.csv").stat().st_size for s in SPLITS}}
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
        codes = spatial_folds(meta["lat"].to_numpy(), meta["lon"].to_numpy(), k, seed, grid_deg, buffer_km,
                              max_block_share)
        sizes = {}
        for j in range(k):
            d = out / f"k{j}"
            d.mkdir(exist_ok=True)
            for code, s in enumerate(SPLITS):
                part = raw[codes[j] == code]
                with atomic_path(d / f"{s}.csv") as tmp:
                    part.to_csv(tmp, index=False)
            sizes[str(j)] = {s: int((codes[j] == c).sum()) for c, s in enumerate(SPLITS)}
        _link_pool(root, out / POOL)
        result = {"args": args, "sizes": sizes,
                  "tested_once": bool((np.sum(codes == 2, axis=0) <= 1).all())}
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
