"""How far a split's held-out images are from its training images: the figures that say whether a benchmark
tests unseen places (book/method.md, "The benchmark"). Written into ``proxy.json`` and ``folds.json`` and shown
by chapter 01."""

from __future__ import annotations

from geomtl_core.data.spatial_split import nearest_train_km
from geomtl_core.geo.metrics import THRESHOLDS_KM
from geomtl_core.geo.protocol import BLOCK_DEG
from geomtl_core.geo.stats import effective_blocks, spatial_blocks

import numpy as np

BENCHMARK = "pixel-disjoint-v1"
"""The benchmark version a result was measured on: training crops share no source pixel with any validation or
test crop of their fold (``overlap-50km-v0``: the earlier split whose 50 km radius buffer left 99% of test crops
overlapping a training crop)."""


def split_diagnostics(lat: np.ndarray, lon: np.ndarray, split: np.ndarray, eligible: np.ndarray,
                      shared_px: np.ndarray | None = None, block_deg: float = BLOCK_DEG) -> dict:
    """Figures of one split (codes 0 train, 1 val, 2 test, -1 left out) of the locations ``lat, lon``.

    ``eligible`` marks the locations the split could have trained on (its training cells); ``shared_px``, where
    footprints are known, the number of each location's source pixels that some training crop also reads. The
    nearest-training-location oracle's accuracy is the share of test images with a training location within
    each threshold: a ceiling for a model that answers with a training location.
    """
    split = np.asarray(split)
    train, test = split == 0, split == 2
    eligible = np.asarray(eligible, bool)
    out: dict = {"train": int(train.sum()), "val": int((split == 1).sum()), "test": int(test.sum()),
                 "eligible_train": int(eligible.sum()), "dropped_train": int((eligible & ~train).sum()),
                 "kept_share": round(float(train.sum() / max(eligible.sum(), 1)), 4)}
    if test.any() and train.any():
        d = nearest_train_km(lat, lon, split, of=2)
        out["nearest_train_km"] = {f"q{q:02d}": round(float(v), 1)
                                   for q, v in zip((5, 25, 50, 75, 95), np.percentile(d, [5, 25, 50, 75, 95]),
                                                   strict=True)}
        out["oracle_nearest_train"] = {str(t): round(float(np.mean(d <= t)), 4) for t in THRESHOLDS_KM}
        blocks = spatial_blocks(lat[test], lon[test], block_deg)
        out["test_blocks"] = int(blocks.max() + 1)
        out["test_blocks_kish"] = round(effective_blocks(blocks), 1)
    if shared_px is not None:
        held = split > 0
        out["max_shared_px_held"] = int(np.max(shared_px[held], initial=0))
    return out
