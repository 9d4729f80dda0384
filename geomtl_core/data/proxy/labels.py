"""Labels of the proxy dataset, read from real rasters at each location: MODIS MCD12C1 2019 IGBP land
cover (17 classes), its 3-way grouping, and the Köppen-Geiger main climate class (A-E)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from geomtl_core.data.assets import asset_path
from geomtl_core.data.proxy.rasters import GeoTiff, open_geotiff

import numpy as np
from numpy.typing import ArrayLike

IGBP_NAMES = [
    "water", "evergreen needleleaf forest", "evergreen broadleaf forest", "deciduous needleleaf forest",
    "deciduous broadleaf forest", "mixed forest", "closed shrublands", "open shrublands", "woody savannas",
    "savannas", "grasslands", "permanent wetlands", "croplands", "urban and built-up",
    "cropland/natural vegetation mosaic", "snow and ice", "barren",
]
# 3-way grouping, ordered so that the one-hot fills GeoEstimation's Prob_indoor/natural/urban columns
# by analogy: 0 = no vegetation (water, ice, barren), 1 = natural vegetation, 2 = cultivated or built.
GROUP_NAMES = ["water/ice/barren", "natural vegetation", "cultivated or built"]
IGBP_TO_GROUP = np.array([0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 0, 0], dtype=np.int64)
# KG_simplified_uint8.tif: 0 = no data (sea), 1..5 = A tropical, B arid, C temperate, D continental, E polar.
KOPPEN_NAMES = ["A tropical", "B arid", "C temperate", "D continental", "E polar", "O open water"]
KOPPEN_FILL_KM = 100.0
"""A location over the sea takes the Köppen class of the nearest land pixel within this distance."""


@dataclass(frozen=True)
class ProxyLabels:
    """Per-location labels: IGBP class, its group, Köppen main class, and how each Köppen was found."""

    igbp: np.ndarray
    group: np.ndarray
    koppen: np.ndarray
    koppen_filled: np.ndarray  # True where the location was sea and the nearest land class was used


@lru_cache(maxsize=2)
def _raster(name: str) -> GeoTiff:
    return open_geotiff(asset_path(name))


def igbp_at(lat: ArrayLike, lon: ArrayLike) -> np.ndarray:
    """MODIS IGBP class (0-16) of the 0.05 deg pixel containing each point."""
    values = _raster("modis_landcover").sample(lat, lon).astype(np.int64)
    if values.size and values.max() >= len(IGBP_NAMES):
        raise ValueError(f"unexpected MODIS land cover value {values.max()} (no-data?)")
    return values


def koppen_at(lat: ArrayLike, lon: ArrayLike, fill_km: float = KOPPEN_FILL_KM) -> tuple[np.ndarray, np.ndarray]:
    """Köppen main class (0-4 = A-E) at each point; sea points take the nearest land class within
    ``fill_km`` (coastal photos sit on sea pixels at 1 km), else 5 = open water. Returns (class, filled)."""
    tif = _raster("koppen_geiger")
    lat_a, lon_a = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
    raw = tif.sample(lat_a, lon_a).astype(np.int64)
    sea = np.flatnonzero(raw == 0)
    out = raw - 1
    filled = np.zeros(raw.shape, bool)
    if len(sea):
        g = tif.grid
        rad = int(np.ceil(fill_km / 111.2 / g.dlat))
        row, col = g.pixel(lat_a[sea], lon_a[sea])
        need = np.unique((row[:, None] + np.arange(-rad, rad + 1)).clip(0, g.height - 1))
        rows = tif.read_rows(need)
        dy = np.arange(-rad, rad + 1)
        for k, (r, c) in enumerate(zip(row, col, strict=True)):
            rr = (r + dy).clip(0, g.height - 1)
            cc = (c + dy) % g.width
            win = np.stack([rows[int(x)][cc] for x in rr])
            coslat = np.cos(np.radians(g.lat0 - (rr + 0.5) * g.dlat))[:, None]
            d2 = dy[:, None] ** 2 + (dy[None, :] * coslat) ** 2
            d2 = np.where((win > 0) & (d2 <= rad**2), d2, np.inf)
            best = np.unravel_index(np.argmin(d2), d2.shape)
            if np.isfinite(d2[best]):
                out[sea[k]] = int(win[best]) - 1
                filled[sea[k]] = True
            else:
                out[sea[k]] = len(KOPPEN_NAMES) - 1
    return out, filled


def crop_landcover(
    lat: ArrayLike, lon: ArrayLike, fov_km: float, grid: int = 8, batch: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Majority IGBP class and majority 3-way group over a ``grid`` x ``grid`` sample of each crop.

    This is the proxy's *scene* label: like a Places365 label it describes what the whole image
    shows, not only the pixel under the photographer (ties: the lower class index).
    """
    from geomtl_core.data.proxy.world import destinations, offsets_km

    lat_a, lon_a = np.atleast_1d(np.asarray(lat, np.float64)), np.atleast_1d(np.asarray(lon, np.float64))
    dx, dy = offsets_km(fov_km, grid)
    group_onehot = np.eye(len(GROUP_NAMES), dtype=np.int64)[IGBP_TO_GROUP]
    igbp = np.empty(len(lat_a), np.int64)
    group = np.empty(len(lat_a), np.int64)
    for start in range(0, len(lat_a), batch):
        sl = slice(start, start + batch)
        glat, glon = destinations(lat_a[sl], lon_a[sl], dx, dy)
        values = igbp_at(glat.ravel(), glon.ravel()).reshape(len(glat), -1)
        counts = np.zeros((len(glat), len(IGBP_NAMES)), np.int64)
        np.add.at(counts, (np.repeat(np.arange(len(glat)), values.shape[1]), values.ravel()), 1)
        igbp[sl] = counts.argmax(1)
        group[sl] = (counts @ group_onehot).argmax(1)
    return igbp, group


def labels_at(lat: ArrayLike, lon: ArrayLike) -> ProxyLabels:
    """All proxy labels at the points."""
    igbp = igbp_at(lat, lon)
    kg, filled = koppen_at(lat, lon)
    return ProxyLabels(igbp=igbp, group=IGBP_TO_GROUP[igbp], koppen=kg, koppen_filled=filled)
