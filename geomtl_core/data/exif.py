"""EXIF of a photo to predict: its orientation and its GPS position, read leniently.

Orientation is applied by :func:`geomtl_core.data.images.decode_image` itself (the same for training,
evaluation and prediction); it is read here only to report malformed values. A malformed GPS block
(missing references, zero denominators, out-of-range values) is ignored with a warning, never an
exception.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

from PIL import Image, UnidentifiedImageError

ORIENTATION_TAG = 0x0112
GPS_IFD_TAG = 0x8825
GPS_LAT_REF, GPS_LAT, GPS_LON_REF, GPS_LON = 1, 2, 3, 4


@dataclass
class ExifInfo:
    """Orientation (1 = upright), GPS ``(lat, lon)`` if valid, and warnings about what was ignored."""

    orientation: int = 1
    gps: tuple[float, float] | None = None
    warnings: list[str] = field(default_factory=list)


def read_exif(data: bytes) -> ExifInfo:
    """EXIF orientation and GPS of encoded image bytes (header only; pixels are not decoded)."""
    info = ExifInfo()
    try:
        with Image.open(io.BytesIO(data)) as im:
            exif = im.getexif()
            orientation = exif.get(ORIENTATION_TAG, 1)
            gps_ifd = exif.get_ifd(GPS_IFD_TAG)
    except (UnidentifiedImageError, Image.DecompressionBombError):
        return info  # not an image, or refused: the decoder reports it
    except Exception as exc:
        info.warnings.append(f"unreadable EXIF ignored ({type(exc).__name__}: {exc})")
        return info
    if isinstance(orientation, int) and 1 <= orientation <= 8:
        info.orientation = orientation
    else:
        info.warnings.append(f"EXIF orientation {orientation!r} is not 1-8; ignored")
    info.gps, gps_warning = parse_gps(gps_ifd)
    if gps_warning:
        info.warnings.append(gps_warning)
    return info


def parse_gps(ifd) -> tuple[tuple[float, float] | None, str | None]:
    """``((lat, lon), None)`` from a GPS IFD mapping, ``(None, None)`` without a position, or
    ``(None, warning)`` when the position is malformed.

    >>> [round(x, 6) for x in parse_gps({1: "N", 2: (48, 51, 29.5), 3: "E", 4: (2, 17, 40.6)})[0]]
    [48.858194, 2.294611]
    >>> parse_gps({2: (48, 51, 29.5), 4: (2, 17, 40.6)})
    (None, 'EXIF GPS ignored: GPSLatitudeRef is missing')
    """
    if not ifd or (GPS_LAT not in ifd and GPS_LON not in ifd):
        return None, None
    try:
        lat = _coordinate(ifd, GPS_LAT, GPS_LAT_REF, "GPSLatitude", ("N", "S"), 90.0)
        lon = _coordinate(ifd, GPS_LON, GPS_LON_REF, "GPSLongitude", ("E", "W"), 180.0)
    except (ValueError, TypeError, ZeroDivisionError, OverflowError) as exc:
        return None, f"EXIF GPS ignored: {exc}"
    if lat == 0.0 and lon == 0.0:
        return None, "EXIF GPS ignored: position 0, 0 (a placeholder written without a GPS fix)"
    return (lat, lon), None


def _coordinate(ifd, tag: int, ref_tag: int, name: str, refs: tuple[str, str], limit: float) -> float:
    if tag not in ifd:
        raise ValueError(f"{name} is missing")
    if ref_tag not in ifd:
        raise ValueError(f"{name}Ref is missing")
    ref = ifd[ref_tag]
    ref = ref.decode("ascii", "replace") if isinstance(ref, bytes) else str(ref)
    ref = ref.strip("\x00 ").upper()
    if ref not in refs:
        raise ValueError(f"{name}Ref is {ref!r}, expected {' or '.join(refs)}")
    value = ifd[tag]
    parts = list(value) if isinstance(value, (tuple, list)) else [value]
    if not 1 <= len(parts) <= 3:
        raise ValueError(f"{name} has {len(parts)} values, expected degrees, minutes, seconds")
    numbers = [_rational(p, name) for p in parts]
    if any(x < 0 for x in numbers) or any(x >= 60 for x in numbers[1:]):
        raise ValueError(f"{name} {numbers} is not degrees, minutes (< 60), seconds (< 60)")
    degrees = sum(x / 60**k for k, x in enumerate(numbers))
    if degrees > limit:
        raise ValueError(f"{name} {degrees:.6f} is out of range (max {limit:g})")
    return -degrees if ref == refs[1] else degrees


def _rational(value, name: str) -> float:
    """A float of an EXIF rational (Pillow's IFDRational, a (num, den) pair, or a number)."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        num, den = value
    else:
        num, den = getattr(value, "numerator", value), getattr(value, "denominator", 1)
    num, den = float(num), float(den)
    if den == 0:
        raise ValueError(f"{name} has a zero denominator")
    x = num / den
    if not math.isfinite(x):
        raise ValueError(f"{name} is not finite")
    return x
