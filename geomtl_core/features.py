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

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm


def cache_key(model_cfg, image_size: int, seed: int, split_ids: np.ndarray, source: str) -> str:
    """Hash of what the features depend on: backbone (and its seed if random), size, image ids, source."""
    h = hashlib.sha256()
    init = "pretrained" if model_cfg.pretrained else f"seed{seed}"
    h.update(json.dumps([model_cfg.backbone, model_cfg.width, init, image_size, source]).encode())
    h.update("\n".join(map(str, split_ids)).encode())
    return h.hexdigest()[:16]


def extract_features(
    model, dataset: Dataset, path: Path, batch_size: int = 128, workers: int = 2, progress: bool = True,
) -> np.ndarray:
    """Pooled features (N, D) of ``model.backbone_features`` over an eval-mode dataset, cached at ``path``."""
    if path.exists():
        feats = np.load(path)
        if len(feats) == len(dataset):
            return feats.astype(np.float32)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        multiprocessing_context="fork" if workers else None)
    out = []
    for x, _ in tqdm(loader, desc=f"features {model.backbone_name}", disable=not progress, leave=False):
        with torch.no_grad():
            if x.ndim == 5:  # five-crop: average the crops' features
                b, c = x.shape[:2]
                f = model.backbone_features(x.reshape(-1, *x.shape[2:]))
                out.append(np.asarray(f.detach().cpu()).reshape(b, c, -1).mean(axis=1))
            else:
                out.append(np.asarray(model.backbone_features(x).detach().cpu()))
    feats = np.concatenate(out).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, feats)
    tmp.replace(path)
    return feats


class FeatureDataset(Dataset):
    """(feature vector, {task: label}) pairs for training heads on cached features."""

    def __init__(self, feats: np.ndarray, targets: dict[str, np.ndarray]):
        self.x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))
        self.y = {k: torch.from_numpy(np.asarray(v, dtype=np.int64)) for k, v in targets.items()}

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, k: int):
        return self.x[k], {t: v[k] for t, v in self.y.items()}


def transfer_head_weights(head_model, full_model) -> None:
    """Copy neck, heads and learned loss weights from a feature model into an image model."""
    for name in ("neck", "neck_bn"):
        getattr(full_model, name).set_weights(getattr(head_model, name).get_weights())
    for task, layer in head_model.heads.items():
        full_model.heads[task].set_weights(layer.get_weights())
    if head_model.log_vars is not None:
        full_model.log_vars.assign(head_model.log_vars)
