"""Cached features of a frozen backbone: extract once per image, then train only neck and heads.

This is how a dozen trainings fit in a laptop-CPU hour: the frozen backbone of the final image
model runs once over the images (eval transform, no augmentation), every experiment reuses its
pooled features (float32), and the trained neck and heads are copied back into that same image
model, so bundles stay ordinary and evaluate identically from images.

A cache is two ``.npy`` files beside each other, ``<stem>.ids.npy`` (image ids) and ``<stem>.f32.npy`` (their
features, row for row), written atomically under a lock by :func:`extract_features` and only ever extended at
the end: features first, then ids, so a reader that loads the ids and then memory-maps the features without a
lock always finds a row for every id it read. Each process keeps an open cache (ids index and memory map)
until its files change, so a second run in the same process pays nothing to read it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from geomtl_core.files import atomic_path

import numpy as np
import pandas as pd
import torch
from filelock import FileLock
from torch.utils.data import Dataset
from tqdm.auto import tqdm


def cache_key(model_cfg, image_size: int, seed: int, source: str) -> str:
    """Hash of what features depend on: backbone (and its seed if random), input size, image source."""
    init = "pretrained" if model_cfg.pretrained else f"seed{seed}"
    what = [model_cfg.backbone, model_cfg.width, init, image_size, source]
    if getattr(model_cfg, "finetune_blocks", 0):  # activations below the tuned blocks, not pooled features
        what.append(f"below_last_{model_cfg.finetune_blocks}_blocks")
    if model_cfg.backbone == "small_cnn" and getattr(model_cfg, "conv_padding", "same") != "same":
        what.append(model_cfg.conv_padding)  # a different network ("same" keeps the keys it always had)
    blob = json.dumps(what).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def feature_cache_path(cfg, split: str) -> Path:
    """The stem of the cache of a config's frozen backbone over one image folder (see the module docstring).

    By image folder: the splits of cross-validation folds, which read one pool, share one cache (by image id);
    each split folder of an export has its own, since ids need not be unique across the splits of a data root
    (the pool's are). The root is written relative to the cache, so a moved or cloned project (data and cache
    inside it) keeps its cache."""
    source = os.path.relpath(Path(cfg.data.root).resolve(), Path(cfg.data.cache_dir).resolve())
    folder = cfg.data.images or split
    key = cache_key(cfg.model, cfg.data.image_size, cfg.train.seed, f"{source}:{folder}")
    name = folder.replace("/", "-")
    return Path(cfg.data.cache_dir) / f"features_{cfg.model.backbone}_{cfg.data.image_size}_{name}_{key}"


def uses_cached_features(cfg) -> bool:
    """Frozen backbone (or all of it below the tuned blocks) + cache_features: train on what the frozen
    part computes, extracted once per image."""
    m = cfg.model
    return (m.freeze_backbone or m.finetune_blocks > 0) and cfg.train.cache_features and m.backbone != "features"


def _files(stem: Path) -> tuple[Path, Path, Path]:
    """The ids, features and lock files of a cache stem."""
    return stem.with_name(stem.name + ".ids.npy"), stem.with_name(stem.name + ".f32.npy"), \
        stem.with_name(stem.name + ".lock")


@dataclass(frozen=True)
class _Open:
    """A cache as this process last read it: the ids file's identity, an index of its ids, the features' map."""

    signature: tuple[int, int, int]
    index: pd.Index
    feats: np.ndarray


_OPEN: dict[Path, _Open] = {}
"""Caches this process has open, by stem; reopened when their ids file changes (another writer extended it)."""


def _open(stem: Path) -> _Open | None:
    """The cache at ``stem`` (None: none yet), read without a lock (see the module docstring)."""
    ids_file, feats_file, _ = _files(stem)
    try:
        st = ids_file.stat()
    except FileNotFoundError:
        return None
    signature = (st.st_ino, st.st_size, st.st_mtime_ns)
    hit = _OPEN.get(stem)
    if hit is not None and hit.signature == signature:
        return hit
    ids = np.load(ids_file)
    feats = np.load(feats_file, mmap_mode="r")
    if len(feats) < len(ids):
        raise RuntimeError(f"{feats_file} has {len(feats)} rows for {len(ids)} ids: written by something else than "
                           "extract_features; delete both files to rebuild the cache")
    _OPEN[stem] = hit = _Open(signature, pd.Index(ids), feats)
    return hit


def _rows(cache: _Open | None, ids: np.ndarray) -> np.ndarray:
    """Row of each id in the cache, -1 where it has none."""
    return np.full(len(ids), -1, np.int64) if cache is None else cache.index.get_indexer(ids)


def extract_features(
    model, dataset: Dataset, path: Path, batch_size: int = 128, workers: int = 2, progress: bool = True,
) -> np.ndarray:
    """Pooled features (N, D) of ``model.backbone_features`` over an eval-mode dataset; rows of
    unreadable images are NaN (see :class:`FeatureDataset`, which gives them sample weight 0).

    ``path`` (a stem, :func:`feature_cache_path`) caches features by image id: any subset of images already
    extracted (e.g. a 10% training subset) is served from it without a lock; missing images are extracted and
    added under the cache's lock (one writer at a time; a waiting process then finds them there).
    """
    ids = np.asarray(dataset.labels.img_id).astype(str)
    rows = _rows(_open(path), ids)
    if (rows < 0).any():
        ids_file, feats_file, lock = _files(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(lock):
            cache = _open(path)
            missing = np.flatnonzero(_rows(cache, ids) < 0)
            if len(missing):
                new = _run(model, torch.utils.data.Subset(dataset, missing.tolist()), batch_size, workers, progress)
                old_ids = np.empty(0, str) if cache is None else cache.index.to_numpy().astype(str)
                feats = new if cache is None else np.concatenate([cache.feats, new])
                with atomic_path(feats_file) as tmp:  # features first: every id a reader finds has its row
                    np.save(tmp, feats)
                with atomic_path(ids_file) as tmp:
                    np.save(tmp, np.concatenate([old_ids, ids[missing]]))
        rows = _rows(_open(path), ids)
    cache = _open(path)
    if cache is None:  # no image asked for, none ever extracted
        return np.empty((0, 0), np.float32)
    return np.asarray(cache.feats[rows], dtype=np.float32)


def cached_features(path: Path, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features of the ``ids`` found in a cache written by :func:`extract_features`, and which were found
    (a training image outside every cell, for instance, was never extracted)."""
    rows = _rows(_open(path), np.asarray(ids).astype(str))
    found = rows >= 0
    feats = _OPEN[path].feats[rows[found]] if path in _OPEN else np.empty((0, 0), np.float32)
    return np.asarray(feats, dtype=np.float32), found


def _run(model, dataset: Dataset, batch_size: int, workers: int, progress: bool) -> np.ndarray:
    from geomtl_core.data.dataset import make_loader

    loader = make_loader(dataset, batch_size, workers=workers)
    out = []
    for batch in tqdm(loader, desc=f"features {model.backbone_name}", disable=not progress, leave=False):
        x = batch[0]
        with torch.no_grad():
            if x.ndim == 5:  # five-crop: average the crops' features
                b, c = x.shape[:2]
                f = model.backbone_features(x.reshape(-1, *x.shape[2:]))
                f = np.asarray(f.detach().cpu()).reshape(b, c, -1).mean(axis=1)
            else:
                f = np.asarray(model.backbone_features(x).detach().cpu())
        if len(batch) > 2:  # unreadable images (weight 0) get NaN features, never a placeholder's
            f = f.astype(np.float32)
            f[np.asarray(batch[2]) <= 0] = np.nan
        out.append(f)
    return np.concatenate(out).astype(np.float32)


class FeatureDataset(Dataset):
    """(feature vector, {task: label}) pairs for training heads on cached features; when some rows
    are NaN (unreadable images) every sample also carries a weight, 0 for those rows (zeroed).

    A loader reads whole batches (``__getitems__``: one index per tensor instead of a dict per sample, then
    :meth:`collate_fn` passes them through): the same batches as sample by sample, about ten times faster."""

    def __init__(self, feats: np.ndarray, targets: dict[str, np.ndarray]):
        feats = np.array(feats, dtype=np.float32)
        ok = np.isfinite(feats).all(axis=1)
        feats[~ok] = 0.0
        self.x = torch.from_numpy(feats)
        self.y = {k: torch.from_numpy(np.asarray(v, dtype=np.int64)) for k, v in targets.items()}
        self.w = None if ok.all() else torch.from_numpy(ok.astype(np.float32))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, k: int):
        y = {t: v[k] for t, v in self.y.items()}
        return (self.x[k], y) if self.w is None else (self.x[k], y, self.w[k])

    def __getitems__(self, ks: list[int]):
        """A whole batch, as the default collate would stack its samples."""
        k = torch.as_tensor(ks, dtype=torch.long)
        y = {t: v[k] for t, v in self.y.items()}
        return (self.x[k], y) if self.w is None else (self.x[k], y, self.w[k])

    @staticmethod
    def collate_fn(batch):
        """The batch :meth:`__getitems__` made, unchanged (the loader's collate step)."""
        return batch
