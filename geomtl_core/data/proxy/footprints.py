"""Which source pixels of the world image each proxy crop reads, so that a split can keep a training crop
only if it shares no source pixel with any validation or test crop (the pixel-disjoint benchmark,
book/method.md). A radius between crop centres is not the right test: crops are north-up squares in
local azimuthal coordinates, and a source pixel is about 7.4 km north-south but narrower east-west away
from the equator. The footprint is exactly the set of pixels :func:`~geomtl_core.data.proxy.world.bilinear`
touches when :func:`~geomtl_core.data.proxy.world.cut` cuts the crop."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from geomtl_core.data.proxy.world import check_crop, destinations, offsets_km, source_corners
from geomtl_core.geo.geodesy import validate_coordinates

import numpy as np
from numpy.typing import ArrayLike


@lru_cache(maxsize=1)
def world_shape() -> tuple[int, int]:
    """(height, width) of the pinned Blue Marble image, read from its header (the pixels are not decoded)."""
    from geomtl_core.data.assets import asset_path

    from PIL import Image

    with Image.open(asset_path("bmng")) as im:
        width, height = im.size
    return height, width


@dataclass(frozen=True)
class Footprints:
    """The source pixels of n crops in CSR form: crop i reads ``pixels[indptr[i]:indptr[i + 1]]`` (sorted, unique
    flat indices into a ``height x width`` world image)."""

    indptr: np.ndarray
    pixels: np.ndarray
    n_pixels: int

    @classmethod
    def of_crops(cls, lat: ArrayLike, lon: ArrayLike, fov_km: float, size: int,
                 shape: tuple[int, int] | None = None, batch: int = 256) -> Footprints:
        """Footprints of the crops :func:`~geomtl_core.data.proxy.world.cut` cuts at these centres
        (``shape``: the world image's (height, width), the pinned asset's by default)."""
        check_crop(fov_km, size)
        lat_a, lon_a = validate_coordinates(np.atleast_1d(lat), np.atleast_1d(lon), what="crop centres")
        height, width = world_shape() if shape is None else shape
        dx, dy = offsets_km(fov_km, size)
        parts, counts = [], []
        for start in range(0, len(lat_a), batch):
            la, lo = destinations(lat_a[start:start + batch], lon_a[start:start + batch], dx, dy)
            idx = np.concatenate([c.reshape(len(la), -1) for c in source_corners(height, width, la, lo)[:4]], axis=1)
            idx.sort(axis=1)
            first = np.ones(idx.shape, bool)
            first[:, 1:] = idx[:, 1:] != idx[:, :-1]
            parts.append(idx[first].astype(np.int32))
            counts.append(first.sum(axis=1))
        indptr = np.zeros(len(lat_a) + 1, np.int64)
        if counts:
            np.cumsum(np.concatenate(counts), out=indptr[1:])
        pixels = np.concatenate(parts) if parts else np.zeros(0, np.int32)
        return cls(indptr, pixels, height * width)

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def _entries(self, crops: np.ndarray) -> np.ndarray:
        """Per stored pixel: whether its crop is in the boolean mask ``crops``."""
        return np.repeat(np.asarray(crops, bool), np.diff(self.indptr))

    def marked(self, crops: np.ndarray) -> np.ndarray:
        """Boolean world image (flat): the pixels read by any crop of the mask ``crops``."""
        out = np.zeros(self.n_pixels, bool)
        out[self.pixels[self._entries(crops)]] = True
        return out

    def shared_with(self, crops: np.ndarray) -> np.ndarray:
        """Per crop, how many of its source pixels any crop of the mask ``crops`` also reads (a crop of the mask
        counts all of its own)."""
        hit = self.marked(crops)[self.pixels].astype(np.int64)
        return np.add.reduceat(hit, self.indptr[:-1]) if len(hit) else np.zeros(len(self), np.int64)

    def touching(self, crops: np.ndarray) -> np.ndarray:
        """Per crop: whether it shares at least one source pixel with a crop of the mask ``crops``."""
        return self.shared_with(crops) > 0

    def sizes(self) -> np.ndarray:
        """Number of source pixels each crop reads."""
        return np.diff(self.indptr)
