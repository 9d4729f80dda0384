"""Retrieval embeddings from what the feature cache stores (pooled backbone features, or with tuned blocks the
activations entering them): the backbone's pooled features, or the trained network's neck (the features the
geolocation and scene losses shaped). One function, used by the hybrid's choice on validation
(:mod:`geomtl_core.inference.hybrid`) and by prediction with a bundle's gallery, so both embed alike."""

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


def embed(model, cached: np.ndarray, embedding: str) -> np.ndarray:
    """Rows of what the feature cache stores (N, D) as ``embedding`` (float32): a frozen backbone's pooled
    features as they are, else through ``model.backbone_embedding`` (the tuned blocks) or ``model.neck_embedding``;
    rows with NaN stay all-NaN (the unreadable images, left out downstream as before)."""
    if embedding not in EMBEDDINGS:
        raise InputError(f"retrieval embedding must be one of {list(EMBEDDINGS)}, received: {embedding!r}")
    cached = np.asarray(cached, dtype=np.float32)
    if embedding not in embeddings_for(model):
        embedding = "backbone"
    if embedding == "backbone" and not getattr(model, "finetune_blocks", 0):
        return cached
    fn = model.neck_embedding if embedding == "neck" else model.backbone_embedding
    ok = np.flatnonzero(np.isfinite(cached).all(axis=1))
    parts = []
    with torch.no_grad():
        for start in range(0, max(len(ok), 1), _BATCH):  # one all-zero row finds the width when no row is readable
            rows = cached[ok[start:start + _BATCH]] if len(ok) else np.zeros((1, cached.shape[1]), np.float32)
            parts.append(np.asarray(ops.convert_to_numpy(fn(ops.convert_to_tensor(rows))), dtype=np.float32))
    result = np.full((len(cached), parts[0].shape[1]), np.nan, dtype=np.float32)
    if len(ok):
        result[ok] = np.concatenate(parts)
    return result
