"""Cached features of a frozen backbone: extract once per split, then train only neck and heads.

This is how a dozen trainings fit in a laptop-CPU hour: the frozen backbone of the final image
model runs once over the images (eval transform, no augmentation), every experiment reuses its
pooled features (float32), and the trained neck and heads are copied back into that same image
model, so bundles stay ordinary and evaluate identically from images.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from geomtl_core.files import atomic_path

import numpy as np
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


def extract_features(
    model, dataset: Dataset, path: Path, batch_size: int = 128, workers: int = 2, progress: bool = True,
) -> np.ndarray:
    """Pooled features (N, D) of ``model.backbone_features`` over an eval-mode dataset; rows of
    unreadable images are NaN (see :class:`FeatureDataset`, which gives them sample weight 0).

    ``path`` (.npz) caches features by image id: any subset of images already extracted (e.g. a
    10% training subset) is served from it; missing images are extracted and added.
    """
    ids = np.asarray(dataset.labels.img_id).astype(str)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_name(path.name + ".lock")):  # one writer at a time; a waiting reader sees its rows
        cached_ids, cached = np.empty(0, dtype=str), None
        if path.exists():
            z = np.load(path)
            cached_ids, cached = z["ids"].astype(str), z["feats"]
        pos = {k: i for i, k in enumerate(cached_ids)}
        missing = np.array([k for k, i in enumerate(ids) if i not in pos], dtype=np.int64)
        if len(missing):
            new = _run(model, torch.utils.data.Subset(dataset, missing.tolist()), batch_size, workers, progress)
            cached_ids = np.concatenate([cached_ids, ids[missing]])
            cached = new if cached is None else np.concatenate([cached, new])
            with atomic_path(path) as tmp:
                np.savez(tmp, ids=cached_ids, feats=cached)
            pos = {k: i for i, k in enumerate(cached_ids)}
    return cached[[pos[i] for i in ids]].astype(np.float32)


def cached_features(path: Path, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features of the ``ids`` found in a cache written by :func:`extract_features`, and which were found
    (a training image outside every cell, for instance, was never extracted)."""
    z = np.load(path)
    pos = {k: i for i, k in enumerate(z["ids"].astype(str))}
    ids = np.asarray(ids).astype(str)
    found = np.array([i in pos for i in ids], bool)
    return z["feats"][[pos[i] for i in ids[found]]], found


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
    are NaN (unreadable images) every sample also carries a weight, 0 for those rows (zeroed)."""

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
