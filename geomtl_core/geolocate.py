"""From network outputs to coordinates: per-partitioning probabilities, the hierarchical
score (GeoEstimation's f*), top-k cells, and predicted latitude/longitude."""

from __future__ import annotations

from dataclasses import dataclass

from geomtl_core.partitioning import Hierarchy, Partitioning

import numpy as np
import torch
from tqdm.auto import tqdm


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def predict_probabilities(
    model, loader, tasks: list[str], progress: bool = True, from_features: bool = False
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Softmax probabilities of every task over a loader (five-crop batches averaged over crops), and
    which samples were actually read (batches of ``(x, y, weight)`` mark unreadable ones with weight 0).

    ``from_features``: the loader yields pooled backbone features (see geomtl_core.features).
    """
    out: dict[str, list[np.ndarray]] = {t: [] for t in tasks}
    valid: list[np.ndarray] = []
    for batch in tqdm(loader, desc="predict", disable=not progress, leave=False):
        x = batch[0]
        valid.append(np.asarray(batch[2]) > 0 if len(batch) > 2 else np.ones(len(x), bool))
        crops = x.shape[1] if x.ndim == 5 and not from_features else 1
        flat = x.reshape(-1, *x.shape[-3:]) if crops > 1 else x
        with torch.no_grad():
            logits = model.heads_from_features(flat) if from_features else model(flat, training=False)
        for t in tasks:
            p = softmax(np.asarray(logits[t].detach().cpu().numpy(), dtype=np.float64))
            out[t].append(p.reshape(len(x), crops, -1).mean(axis=1) if crops > 1 else p)
    return {t: np.concatenate(v) for t, v in out.items()}, np.concatenate(valid) if valid else np.ones(0, bool)


@dataclass
class Geolocation:
    """Predicted coordinates and the class chosen at the finest partitioning."""

    lat: np.ndarray
    lon: np.ndarray
    fine_class: np.ndarray
    score: np.ndarray


def geolocate(
    probs: dict[str, np.ndarray], parts: list[Partitioning], hierarchy: Hierarchy | None = None
) -> dict[str, Geolocation]:
    """Coordinates per partitioning (argmax class mean) and, with a hierarchy, ``"hierarchy"`` (f*)."""
    out = {}
    for part in parts:
        p = probs[part.name]
        c = p.argmax(axis=1)
        lat, lon = part.class_coordinates(c)
        out[part.name] = Geolocation(lat, lon, c, p[np.arange(len(c)), c])
    if hierarchy is not None and len(parts) > 1:
        s = hierarchy.scores([probs[p.name] for p in parts])
        c = s.argmax(axis=1)
        lat, lon = parts[-1].class_coordinates(c)
        out["hierarchy"] = Geolocation(lat, lon, c, s[np.arange(len(c)), c])
    return out


def top_k(p: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and probabilities of the k most likely classes per row, best first."""
    k = min(k, p.shape[1])
    idx = np.argpartition(-p, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(p, idx, axis=1), axis=1)
    idx = np.take_along_axis(idx, order, axis=1)
    return idx, np.take_along_axis(p, idx, axis=1)
