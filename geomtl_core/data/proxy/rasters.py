"""Label rasters of the proxy dataset: global GeoTIFFs (MODIS land cover, Köppen-Geiger) read with
Pillow tags + zlib, one strip at a time, so a 43200x21600 raster never has to sit in memory."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

TAG_PIXEL_SCALE, TAG_TIEPOINT, TAG_GEOKEYS, TAG_NODATA = 33550, 33922, 34735, 42113
GEOKEY_RASTER_TYPE, PIXEL_IS_AREA = 1025, 1


@contextlib.contextmanager
def trusted_large_images() -> Iterator[None]:
    """Lift Pillow's decompression-bomb limit for the duration (only for pinned, sha256-checked files)."""
    from PIL import Image

    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


@dataclass(frozen=True)
class GeoGrid:
    """A global lat/lon grid: pixel (0, 0)'s north-west corner at (lat0, lon0), steps in degrees."""

    width: int
    height: int
    lon0: float
    lat0: float
    dlon: float
    dlat: float

    def pixel(self, lat: ArrayLike, lon: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Row and column of the pixel containing each point (longitude wraps, latitude clamps)."""
        lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
        col = np.floor((lon - self.lon0) / self.dlon).astype(np.int64) % self.width
        row = np.clip(np.floor((self.lat0 - lat) / self.dlat).astype(np.int64), 0, self.height - 1)
        return row, col


@dataclass(frozen=True)
class GeoTiff:
    """A single-band 8-bit GeoTIFF's georeferencing and strip layout (from its tags)."""

    path: Path
    grid: GeoGrid
    nodata: int | None
    compression: int
    rows_per_strip: int
    offsets: tuple[int, ...]
    counts: tuple[int, ...]

    def read_rows(self, rows: ArrayLike) -> dict[int, np.ndarray]:
        """Decode the strips holding ``rows``; return ``{row: uint8 array of width}``."""
        w, rps = self.grid.width, self.rows_per_strip
        out: dict[int, np.ndarray] = {}
        with self.path.open("rb") as fh:
            for strip in np.unique(np.asarray(rows, np.int64) // rps):
                fh.seek(self.offsets[strip])
                raw = fh.read(self.counts[strip])
                data = zlib.decompress(raw) if self.compression in (8, 32946) else raw
                block = np.frombuffer(data, np.uint8).reshape(-1, w)
                for k in range(block.shape[0]):
                    out[int(strip) * rps + k] = block[k]
        return out

    def read_all(self) -> np.ndarray:
        """The whole raster as a ``(height, width)`` uint8 array."""
        rows = self.read_rows(np.arange(0, self.grid.height, self.rows_per_strip))
        return np.stack([rows[r] for r in range(self.grid.height)])

    def sample(self, lat: ArrayLike, lon: ArrayLike) -> np.ndarray:
        """Nearest-pixel values at the points (the pixel whose area contains each point)."""
        row, col = self.grid.pixel(lat, lon)
        rows = self.read_rows(np.unique(row))
        out = np.empty(row.shape, np.uint8)
        for r in np.unique(row):
            sel = row == r
            out[sel] = rows[int(r)][col[sel]]
        return out


def open_geotiff(path: str | Path) -> GeoTiff:
    """Read and check the tags: one 8-bit band, deflate or no compression, PixelIsArea, global extent."""
    from PIL import Image

    path = Path(path)
    with trusted_large_images(), Image.open(path) as im:
        tags = dict(im.tag_v2)
        width, height = im.size
    need = {TAG_PIXEL_SCALE, TAG_TIEPOINT, 273, 279}
    if not need <= tags.keys():
        raise ValueError(f"{path}: not a GeoTIFF with ModelPixelScale/ModelTiepoint and strips")
    if tags.get(258) not in (8, (8,)) or tags.get(277, 1) != 1 or tags.get(317, 1) != 1:
        raise ValueError(f"{path}: expected one 8-bit band without predictor")
    if tags.get(259, 1) not in (1, 8, 32946):
        raise ValueError(f"{path}: unsupported TIFF compression {tags.get(259)}")
    keys = np.asarray(tags.get(TAG_GEOKEYS, ()), np.int64)[4:].reshape(-1, 4)
    raster_type = {int(k[0]): int(k[3]) for k in keys}.get(GEOKEY_RASTER_TYPE, PIXEL_IS_AREA)
    if raster_type != PIXEL_IS_AREA:
        raise ValueError(f"{path}: GTRasterTypeGeoKey {raster_type}, expected PixelIsArea")
    sx, sy = tags[TAG_PIXEL_SCALE][:2]
    _i, _j, _k, lon0, lat0, _z = tags[TAG_TIEPOINT][:6]
    grid = GeoGrid(width, height, float(lon0), float(lat0), float(sx), float(sy))
    if not (np.isclose(lon0, -180) and np.isclose(lat0, 90) and np.isclose(sx * width, 360)
            and np.isclose(sy * height, 180)):
        raise ValueError(f"{path}: expected a global -180..180, 90..-90 grid, got {grid}")
    nodata = tags.get(TAG_NODATA)
    return GeoTiff(
        path=path, grid=grid, nodata=int(str(nodata).strip("\x00")) if nodata is not None else None,
        compression=int(tags.get(259, 1)), rows_per_strip=int(tags.get(278, height)),
        offsets=tuple(tags[273]), counts=tuple(tags[279]),
    )
