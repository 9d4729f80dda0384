"""The spatial split of a benchmark: train / val / test by blocks of the map, spread over many blocks, with
training images that share nothing with a validation or test image. For the proxy's overhead crops that is
tested on the crops' footprints (no shared source pixel, :class:`Overlap`); for photos, whose content is not
a footprint, by a radius (no training location within ``buffer_km``). A protocol function: the proxy export
uses it, and a user of real MP-16 metadata can split their own coordinates the same way."""

from __future__ import annotations

from typing import Protocol

from geomtl_core.errors import InputError
from geomtl_core.geo.geodesy import EARTH_RADIUS_KM, to_unit_vectors, validate_coordinates
from geomtl_core.geo.stats import spatial_blocks

import numpy as np

SPLIT_CODES = {"train": 0, "val": 1, "test": 2, "left out": -1}
"""The split index of each location as :func:`spatial_split` returns it."""


class Overlap(Protocol):
    """What the images of a split read, for excluding training images that share content with held-out ones
    (:class:`geomtl_core.data.proxy.footprints.Footprints` for the proxy's crops)."""

    def touching(self, crops: np.ndarray) -> np.ndarray:
        """Per image: whether it shares content with an image of the boolean mask ``crops``."""
        ...


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A fixed 64-bit mixing hash (vectorised), so splits do not depend on Python's hash seed."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def cell_uniform(lat: np.ndarray, lon: np.ndarray, seed: int = 0, grid_deg: float = 1e-4) -> np.ndarray:
    """A uniform number in [0, 1) per location from a seeded hash of its ``grid_deg`` cell: every location of
    a cell gets the same number, whatever the order or subset (splits and folds cut this number)."""
    lat, lon = validate_coordinates(lat, lon, what="split coordinates")
    if grid_deg <= 0:
        raise InputError(f"grid_deg must be positive, got {grid_deg}")
    iy = np.round((lat + 90.0) / grid_deg).astype(np.int64)
    ix = np.round(((lon + 180.0) % 360.0) / grid_deg).astype(np.int64) % round(360.0 / grid_deg)
    key = _splitmix64(_splitmix64(iy.astype(np.uint64) ^ _splitmix64(np.uint64(seed) + np.zeros(1, np.uint64)))
                      ^ ix.astype(np.uint64))
    return (key >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def assign_splits(
    lat: np.ndarray, lon: np.ndarray, seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    grid_deg: float = 1e-4,
) -> np.ndarray:
    """Split index (0 train, 1 val, 2 test) from a seeded hash of the coordinates rounded to ``grid_deg``:
    identical coordinates always land in the same split, whatever the order or subset."""
    f = np.asarray(fractions, np.float64)
    if f.shape != (3,) or np.any(f < 0) or not np.isclose(f.sum(), 1.0):
        raise InputError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    return np.searchsorted(np.cumsum(f)[:2], cell_uniform(lat, lon, seed, grid_deg), side="right")


def spatial_split(
    lat: np.ndarray, lon: np.ndarray, seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    grid_deg: float = 2.0, buffer_km: float = 0.0, max_block_share: float = 0.075, block_deg: float = 5.0,
    overlap: Overlap | None = None,
) -> np.ndarray:
    """Split index per location (0 train, 1 val, 2 test, -1 left out), spread like a real benchmark.

    Cells of ``grid_deg`` go whole to one split (:func:`assign_splits`); within val and test no
    ``block_deg`` block holds more than ``max_block_share`` of the split (a seeded subsample of the
    block's locations stays, the rest is left out); then training images that ``overlap`` says share
    content with any val or test image, and training locations within ``buffer_km`` of any val or test
    location, are left out.
    """
    if not 0 < max_block_share <= 1:
        raise InputError(f"max_block_share must be in (0, 1], got {max_block_share}")
    split = assign_splits(lat, lon, seed, fractions, grid_deg)
    return _cap_and_exclude(split, lat, lon, np.random.default_rng(seed), buffer_km, max_block_share, block_deg,
                            overlap)


def spatial_folds(
    lat: np.ndarray, lon: np.ndarray, k: int = 10, seed: int = 0, grid_deg: float = 2.0, buffer_km: float = 0.0,
    max_block_share: float = 0.075, block_deg: float = 5.0, overlap: Overlap | None = None,
) -> np.ndarray:
    """(k, n) split codes of spatial k-fold cross-validation over whole ``grid_deg`` cells: fold j tests the
    cells whose :func:`cell_uniform` number falls in [j/k, (j+1)/k), validates on the previous slice (j − 1,
    cyclic), trains on the rest; each fold gets :func:`spatial_split`'s block cap and exclusions.

    With ``fractions = (1 − 2/k, 1/k, 1/k)`` the last fold *is* :func:`spatial_split` of the same seed (same
    cells, caps and exclusions): applied to the locations a spatial split kept, fold k − 1 reproduces that split.
    """
    if k < 3:
        raise InputError(f"k must be at least 3 (test, validation and training slices), got {k}")
    if not 0 < max_block_share <= 1:
        raise InputError(f"max_block_share must be in (0, 1], got {max_block_share}")
    slice_ = np.minimum((cell_uniform(lat, lon, seed, grid_deg) * k).astype(np.int64), k - 1)
    out = np.empty((k, len(slice_)), np.int64)
    for j in range(k):
        split = np.where(slice_ == j, 2, np.where(slice_ == (j - 1) % k, 1, 0))
        rng = np.random.default_rng(seed if j == k - 1 else [seed, j])
        out[j] = _cap_and_exclude(split, lat, lon, rng, buffer_km, max_block_share, block_deg, overlap)
    return out


def _cap_and_exclude(split: np.ndarray, lat: np.ndarray, lon: np.ndarray, rng: np.random.Generator,
                     buffer_km: float, max_block_share: float, block_deg: float,
                     overlap: Overlap | None = None) -> np.ndarray:
    """Leave out (-1) val and test locations over a block's cap (a seeded random subsample of an over-full
    block stays), training images sharing content with any val or test image (``overlap``) and training
    locations within ``buffer_km`` of any val or test location."""
    split = np.array(split, np.int64)
    for s in (1, 2):
        idx = np.flatnonzero(split == s)
        while len(idx):
            blocks = spatial_blocks(lat[idx], lon[idx], block_deg)
            counts = np.bincount(blocks)
            limit = max(1, int(max_block_share * len(idx)))
            over = np.flatnonzero(counts > limit)
            if not len(over) or limit == 1:
                break
            for b in over:  # keep a seeded random `limit` of an over-full block
                members = idx[blocks == b]
                split[rng.permutation(members)[limit:]] = -1
            idx = np.flatnonzero(split == s)
    held = split > 0
    if overlap is not None and held.any():
        split[(split == 0) & overlap.touching(held)] = -1
    train = np.flatnonzero(split == 0)
    if held.any() and len(train) and buffer_km > 0:
        split[train[_nearest_km(lat, lon, held, split == 0) < buffer_km]] = -1
    return split


def nearest_train_km(lat: np.ndarray, lon: np.ndarray, split: np.ndarray, of: int = 2) -> np.ndarray:
    """Great-circle distance (km) from each location of split ``of`` to its nearest training location."""
    return _nearest_km(lat, lon, split == 0, split == of)


def _nearest_km(lat: np.ndarray, lon: np.ndarray, targets: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Great-circle km from each ``queries`` location to its nearest ``targets`` location (masks), by a
    k-d tree on unit vectors (chord length converted to arc length)."""
    from scipy.spatial import cKDTree

    xyz = to_unit_vectors(lat, lon)
    chord = cKDTree(xyz[targets]).query(xyz[queries])[0]
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(chord / 2, 1.0))
