"""Overhead image crops from NASA Blue Marble (equirectangular, 5400x2700): a local azimuthal
equidistant resampling around each centre, so crops are not stretched near the poles and wrap
across the antimeridian; vectorised over batches of centres."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from geomtl_core.errors import InputError
from geomtl_core.geo.geodesy import EARTH_RADIUS_KM, validate_coordinates

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True)
class World:
    """The world image, row 0 at 90 N, column 0 at 180 W, pixel centres at half steps."""

    pixels: np.ndarray  # (H, W, 3) uint8

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def km_per_px(self) -> float:
        """North-south pixel size (km), the image's resolution everywhere along a meridian."""
        return float(np.pi * EARTH_RADIUS_KM / self.height)


@lru_cache(maxsize=2)
def load_world(path: str | Path | None = None) -> World:
    """Decode the Blue Marble JPEG (the pinned ``bmng`` asset unless ``path``) once per process."""
    from geomtl_core.data.assets import asset_path

    from PIL import Image

    with Image.open(path or asset_path("bmng")) as im:
        pixels = np.ascontiguousarray(np.asarray(im.convert("RGB")))
    if pixels.shape[1] != 2 * pixels.shape[0]:
        raise ValueError(f"world image must be 2:1 equirectangular, got {pixels.shape[1]}x{pixels.shape[0]}")
    return World(pixels)


def check_crop(fov_km: float, size: int) -> None:
    """Reject crops that cannot be cut: a non-positive field of view, a tiny or huge image."""
    if not np.isfinite(fov_km) or fov_km <= 0 or fov_km > 5000:
        raise InputError(f"fov_km must be in (0, 5000] km, got {fov_km}")
    if int(size) != size or size < 8 or size > 1024:
        raise InputError(f"size must be an integer in [8, 1024] px, got {size}")


def offsets_km(fov_km: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """East (dx) and north (dy) offsets of each output pixel centre from the crop centre, (size, size)."""
    step = fov_km / size
    t = (np.arange(size) - (size - 1) / 2) * step
    dx, dy = np.meshgrid(t, -t)  # row 0 is north
    return dx, dy


def destinations(
    lat: ArrayLike, lon: ArrayLike, dx: np.ndarray, dy: np.ndarray, rotation_deg: ArrayLike = 0.0,
    scale: ArrayLike = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Lat/lon (deg), shape ``(B, *dx.shape)``, reached from each of B centres along the great circle of
    bearing atan2(dx, dy) + rotation (clockwise) and length hypot(dx, dy) * scale km."""

    def per_centre(v: ArrayLike) -> np.ndarray:
        a = np.asarray(v, np.float64)
        return a.reshape(-1, *([1] * dx.ndim)) if a.ndim else a

    lat1, lon1 = np.radians(per_centre(lat)), np.radians(per_centre(lon))
    rot = np.radians(per_centre(rotation_deg))
    delta = np.hypot(dx, dy) * per_centre(scale) / EARTH_RADIUS_KM
    theta = np.arctan2(dx, dy) + rot
    sin_lat1, cos_lat1 = np.sin(lat1), np.cos(lat1)
    sin_d, cos_d = np.sin(delta), np.cos(delta)
    sin_lat2 = np.clip(sin_lat1 * cos_d + cos_lat1 * sin_d * np.cos(theta), -1.0, 1.0)
    lon2 = lon1 + np.arctan2(np.sin(theta) * sin_d * cos_lat1, cos_d - sin_lat1 * sin_lat2)
    lat2 = np.degrees(np.arcsin(sin_lat2))
    lon2 = (np.degrees(lon2) + 180.0) % 360.0 - 180.0
    return lat2, lon2


def source_corners(height: int, width: int, lat: np.ndarray, lon: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flat indices of the four source pixels a bilinear read at lat/lon touches (top-left, top-right,
    bottom-left, bottom-right; longitude wraps, latitude clamps at the poles) and the weights ``fx, fy``.
    The one definition of which source pixels a crop reads: :func:`bilinear` and the crop footprints of the
    pixel-disjoint split (:mod:`geomtl_core.data.footprints`) both use it."""
    h, w = height, width
    x = (np.asarray(lon, np.float32) + np.float32(180.0)) * np.float32(w / 360.0) - np.float32(0.5)
    y = (np.float32(90.0) - np.asarray(lat, np.float32)) * np.float32(h / 180.0) - np.float32(0.5)
    y = np.clip(y, 0, h - 1)
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    xi0 = x0.astype(np.int64) % w
    xi1 = (xi0 + 1) % w
    yi0 = y0.astype(np.int64)
    yi1 = np.minimum(yi0 + 1, h - 1)
    r0, r1 = yi0 * w, yi1 * w
    return r0 + xi0, r0 + xi1, r1 + xi0, r1 + xi1, fx, fy


def bilinear(world: World, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Bilinear RGB of the world image at lat/lon (longitude wraps, latitude clamps at the poles), uint8."""
    tl, tr, bl, br, fx, fy = source_corners(world.height, world.width, lat, lon)
    flat = world.pixels.reshape(-1, 3)
    top = flat[tl] * (1 - fx) + flat[tr] * fx
    bottom = flat[bl] * (1 - fx) + flat[br] * fx
    out = top * (1 - fy) + bottom * fy
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def cut(
    world: World, lat: ArrayLike, lon: ArrayLike, fov_km: float = 300.0, size: int = 64,
    rotation_deg: ArrayLike = 0.0, scale: ArrayLike = 1.0,
) -> np.ndarray:
    """Crops ``(B, size, size, 3)`` uint8 centred on the points, ``fov_km * scale`` wide, the crop's up
    direction pointing to the bearing ``rotation_deg`` (0: north up; 90: east up)."""
    check_crop(fov_km, size)
    lat_a, lon_a = validate_coordinates(np.atleast_1d(lat), np.atleast_1d(lon), what="crop centres")
    if np.any(np.asarray(scale) <= 0):
        raise ValueError("scale must be positive")
    dx, dy = offsets_km(fov_km, size)
    lat2, lon2 = destinations(lat_a, lon_a, dx, dy, rotation_deg, scale)
    return bilinear(world, lat2, lon2)
