"""From class probabilities to coordinates (pure numpy): per-partitioning argmax, the hierarchical
score (GeoEstimation's f*), top-k cells, and predicted latitude/longitude."""

from __future__ import annotations

from dataclasses import dataclass

from geomtl_core.geo.partitioning import Hierarchy, Partitioning

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so large logits never overflow."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class Geolocation:
    """Predicted coordinates and the class chosen at the finest partitioning."""

    lat: np.ndarray
    lon: np.ndarray
    fine_class: np.ndarray
    score: np.ndarray


def geolocate(
    probs: dict[str, np.ndarray], parts: list[Partitioning], hierarchy: Hierarchy | None = None,
    remedies: dict | None = None,
) -> dict[str, Geolocation]:
    """Coordinates per partitioning (argmax class mean) and, with a hierarchy, ``"hierarchy"`` (f*) and,
    given fitted ``remedies``, their variants (see :mod:`geomtl_core.geo.hierarchy_fixes`)."""
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
        if remedies:
            from geomtl_core.geo.hierarchy_fixes import scores

            for name, s in scores(probs, parts, hierarchy, remedies).items():
                c = s.argmax(axis=1)
                lat, lon = parts[-1].class_coordinates(c)
                out[name] = Geolocation(lat, lon, c, s[np.arange(len(c)), c])
    return out


def top_k(p: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and probabilities of the k most likely classes per row, best first."""
    k = min(k, p.shape[1])
    idx = np.argpartition(-p, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(p, idx, axis=1), axis=1)
    idx = np.take_along_axis(idx, order, axis=1)
    return idx, np.take_along_axis(p, idx, axis=1)
