"""Retrieval embeddings from pooled backbone features: the frozen backbone's own, or the trained network's neck
(the features the geolocation and scene losses shaped). One function, used by the hybrid's choice on validation
(:mod:`geomtl_core.training.hybrid`) and by prediction with a bundle's gallery, so both embed alike."""

from __future__ import annotations

import geomtl_core  # noqa: F401 - selects the torch backend before keras is imported
from geomtl_core.errors import InputError

import numpy as np
import torch
from keras import ops

EMBEDDINGS = ("backbone", "neck")
"""What retrieval may compare: pooled backbone features, or the neck's output (``model.neck_embedding``)."""
_BATCH = 4096


def embeddings_for(model) -> tuple[str, ...]:
    """The embeddings a model offers: both, unless it has no neck (then the neck is the backbone's features)."""
    return EMBEDDINGS if getattr(model, "neck_units", 0) else EMBEDDINGS[:1]


def embed(model, pooled: np.ndarray, embedding: str) -> np.ndarray:
    """Rows of pooled backbone features (N, D) as ``embedding`` (float32); rows with NaN stay all-NaN (the
    unreadable images, left out downstream as before)."""
    if embedding not in EMBEDDINGS:
        raise InputError(f"retrieval embedding must be one of {list(EMBEDDINGS)}, received: {embedding!r}")
    pooled = np.asarray(pooled, dtype=np.float32)
    if embedding == "backbone" or embedding not in embeddings_for(model):
        return pooled
    ok = np.flatnonzero(np.isfinite(pooled).all(axis=1))
    parts = []
    with torch.no_grad():
        for start in range(0, len(ok), _BATCH):
            out = model.neck_embedding(ops.convert_to_tensor(pooled[ok[start:start + _BATCH]]))
            parts.append(np.asarray(ops.convert_to_numpy(out), dtype=np.float32))
    dim = parts[0].shape[1] if parts else int(model.neck_units)
    result = np.full((len(pooled), dim), np.nan, dtype=np.float32)
    if parts:
        result[ok] = np.concatenate(parts)
    return result
