"""Vectorised S2 cell ids: the one S2 helper of the project (ids, tokens, parents, polygons).

Implements the S2 geometry's quadratic projection and Hilbert-curve cell numbering for
whole numpy arrays, following the same floating-point steps as s2sphere's
``CellId.from_lat_lng(LatLng.from_degrees(lat, lon))`` so that ids are bit-identical
(checked on millions of points in the tests); ~50-100x faster than a per-point loop.
Cell ids are ``uint64``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from geomtl_core.geo.geodesy import from_unit_vectors

import numpy as np
from numpy.typing import ArrayLike

MAX_LEVEL = 30
POS_BITS = 2 * MAX_LEVEL + 1
MAX_SIZE = 1 << MAX_LEVEL
LOOKUP_BITS = 4
SWAP_MASK = 0x01
INVERT_MASK = 0x02
_POS_TO_IJ = ((0, 1, 3, 2), (0, 2, 3, 1), (3, 2, 0, 1), (3, 1, 0, 2))
_POS_TO_ORIENTATION = (SWAP_MASK, 0, 0, INVERT_MASK | SWAP_MASK)
_U64 = np.uint64


def _build_lookup_tables() -> tuple[np.ndarray, np.ndarray]:
    """Tables mapping 4 bits of (i, j) + orientation to 8 bits of Hilbert position, and back."""
    size = 1 << (2 * LOOKUP_BITS + 2)
    lookup_pos = np.zeros(size, dtype=np.int64)
    lookup_ij = np.zeros(size, dtype=np.int64)
    for orig in (0, SWAP_MASK, INVERT_MASK, SWAP_MASK | INVERT_MASK):
        stack = [(0, 0, 0, 0, orig)]
        while stack:
            level, i, j, pos, orientation = stack.pop()
            if level == LOOKUP_BITS:
                ij = (i << LOOKUP_BITS) + j
                lookup_pos[(ij << 2) + orig] = (pos << 2) + orientation
                lookup_ij[(pos << 2) + orig] = (ij << 2) + orientation
                continue
            r = _POS_TO_IJ[orientation]
            for index in range(4):
                stack.append(
                    (
                        level + 1,
                        (i << 1) + (r[index] >> 1),
                        (j << 1) + (r[index] & 1),
                        (pos << 2) + index,
                        orientation ^ _POS_TO_ORIENTATION[index],
                    )
                )
    return lookup_pos, lookup_ij


LOOKUP_POS, LOOKUP_IJ = _build_lookup_tables()


def _uv_to_st(u: np.ndarray) -> np.ndarray:
    """Quadratic projection from face coordinate u in [-1, 1] to s in [0, 1]."""
    root = np.sqrt(1 + 3 * np.abs(u))
    return np.where(u >= 0, 0.5 * root, 1 - 0.5 * root)


def _st_to_uv(s: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_uv_to_st`."""
    s = np.asarray(s, dtype=np.float64)
    return np.where(s >= 0.5, (1.0 / 3.0) * (4 * s * s - 1), (1.0 / 3.0) * (1 - 4 * (1 - s) * (1 - s)))


def _st_to_ij(s: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(MAX_SIZE * s), 0, MAX_SIZE - 1).astype(np.int64)


# Per face: index of the u numerator, its sign, the v numerator, its sign (denominator: face % 3).
_FACE_UV = np.array([[1, 1, 2, 1], [0, -1, 2, 1], [0, -1, 1, -1], [2, 1, 1, 1], [2, 1, 0, -1], [1, -1, 0, -1]])


def xyz_to_face_uv(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cube face (0-5) and face coordinates (u, v) of 3-vectors (S2's tie-breaking rules)."""
    ax, ay, az = np.abs(x), np.abs(y), np.abs(z)
    axis = np.where(ax > ay, np.where(ax > az, 0, 2), np.where(ay > az, 1, 2))
    p = np.stack([x, y, z], axis=-1)
    base = 3 * np.arange(x.size).reshape(x.shape)
    flat = p.reshape(-1)
    den = flat[base + axis]
    face = axis + 3 * (den < 0)
    spec = _FACE_UV[face]
    u = (spec[..., 1] * flat[base + spec[..., 0]]) / den
    v = (spec[..., 3] * flat[base + spec[..., 2]]) / den
    return face, u, v


def face_uv_to_xyz(face: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(N, 3) unnormalised vectors of face coordinates."""
    one = np.ones_like(u)
    choices = [
        (one, u, v), (-u, one, v), (-u, -v, one), (-one, -v, -u), (v, -one, -u), (v, u, -one),
    ]
    out = np.empty((*np.shape(u), 3))
    for f, comps in enumerate(choices):
        m = face == f
        for k in range(3):
            out[..., k][m] = comps[k][m]
    return out


def from_face_ij(face: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Leaf cell ids (level 30) of integer face coordinates, 4 bits per step via the lookup table."""
    face = np.asarray(face, dtype=np.int64)
    n = face.astype(_U64) << _U64(POS_BITS - 1)
    bits = face & SWAP_MASK
    mask = (1 << LOOKUP_BITS) - 1
    for k in range(7, -1, -1):
        bits = bits + (((i >> (k * LOOKUP_BITS)) & mask) << (LOOKUP_BITS + 2))
        bits = bits + (((j >> (k * LOOKUP_BITS)) & mask) << 2)
        bits = LOOKUP_POS[bits]
        n |= (bits >> 2).astype(_U64) << _U64(k * 2 * LOOKUP_BITS)
        bits = bits & (SWAP_MASK | INVERT_MASK)
    return n * _U64(2) + _U64(1)


def cell_ids(lat: ArrayLike, lon: ArrayLike, level: int = MAX_LEVEL, *, workers: int = 2) -> np.ndarray:
    """S2 cell ids (uint64) at ``level`` of points in degrees (no validation here).

    Works in cache-sized chunks on ``workers`` threads (numpy releases the GIL).
    """
    lat_a = np.ascontiguousarray(lat, dtype=np.float64).ravel()
    lon_a = np.ascontiguousarray(lon, dtype=np.float64).ravel()
    out = np.empty(lat_a.shape, dtype=_U64)
    bounds = [(a, min(a + _CHUNK, lat_a.size)) for a in range(0, lat_a.size, _CHUNK)]

    def work(ab: tuple[int, int]) -> None:
        a, b = ab
        out[a:b] = _leaf_ids(lat_a[a:b], lon_a[a:b])

    if workers > 1 and len(bounds) > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, bounds))
    else:
        for ab in bounds:
            work(ab)
    out = out.reshape(np.shape(lat))
    return out if level == MAX_LEVEL else parent(out, level)


_CHUNK = 1 << 15


def _leaf_ids(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Leaf ids of one chunk, step by step as s2sphere computes them."""
    phi = np.radians(lat)
    theta = np.radians(lon)
    cosphi = np.cos(phi)
    x, y, z = np.cos(theta) * cosphi, np.sin(theta) * cosphi, np.sin(phi)
    face, u, v = xyz_to_face_uv(x, y, z)
    return from_face_ij(face, _st_to_ij(_uv_to_st(u)), _st_to_ij(_uv_to_st(v)))


def lsb_for_level(level: int | np.ndarray) -> np.ndarray:
    """The lowest set bit of a cell id at ``level``."""
    return _U64(1) << (_U64(2) * (_U64(MAX_LEVEL) - np.asarray(level, dtype=_U64)))


def parent(ids: ArrayLike, level: int | np.ndarray) -> np.ndarray:
    """Ancestor ids at ``level`` (which must not exceed each id's own level)."""
    ids = np.asarray(ids, dtype=_U64)
    lsb = lsb_for_level(level)
    return (ids & ~(lsb - _U64(1))) | lsb


def lsb(ids: ArrayLike) -> np.ndarray:
    """Lowest set bit of each id."""
    ids = np.asarray(ids, dtype=_U64)
    return ids & (~ids + _U64(1))


def level_of(ids: ArrayLike) -> np.ndarray:
    """Level (0-30) of each cell id."""
    low = lsb(ids)
    tz = np.log2(low.astype(np.float64)).astype(np.int64)  # exact for powers of two
    return MAX_LEVEL - tz // 2


def range_min(ids: ArrayLike) -> np.ndarray:
    """Smallest leaf id inside each cell."""
    ids = np.asarray(ids, dtype=_U64)
    return ids - (lsb(ids) - _U64(1))


def range_max(ids: ArrayLike) -> np.ndarray:
    """Largest leaf id inside each cell."""
    ids = np.asarray(ids, dtype=_U64)
    return ids + (lsb(ids) - _U64(1))


def children(ids: ArrayLike) -> np.ndarray:
    """(N, 4) child ids in Hilbert order."""
    ids = np.asarray(ids, dtype=_U64)
    new_lsb = lsb(ids) >> _U64(2)
    offsets = np.array([-3, -1, 1, 3], dtype=np.int64)
    return (ids[:, None].astype(np.int64) + offsets[None, :] * new_lsb[:, None].astype(np.int64)).astype(_U64)


def is_valid(ids: ArrayLike) -> np.ndarray:
    """True for ids with a face < 6 and the trailing 1 at an even bit position."""
    ids = np.asarray(ids, dtype=_U64)
    face_ok = (ids >> _U64(POS_BITS)) < _U64(6)
    low = lsb(ids)
    return face_ok & (ids != 0) & ((low & _U64(0x1555555555555555)) != 0)


def to_token(ids: ArrayLike) -> list[str]:
    """S2 tokens: hex ids with trailing zeros stripped (``"X"`` for id 0)."""
    return [format(int(i), "016x").rstrip("0") or "X" for i in np.asarray(ids, dtype=_U64).ravel()]


def from_token(tokens: list[str] | np.ndarray) -> np.ndarray:
    """Cell ids of S2 tokens; raises ``ValueError`` naming the first malformed token."""
    out = np.empty(len(tokens), dtype=_U64)
    for k, tok in enumerate(tokens):
        t = str(tok).strip().lower()
        if not 1 <= len(t) <= 16 or any(c not in "0123456789abcdef" for c in t):
            raise ValueError(f"malformed S2 token {tok!r} at position {k}")
        out[k] = int(t.ljust(16, "0"), 16)
    bad = np.flatnonzero(~is_valid(out))
    if len(bad):
        raise ValueError(f"invalid S2 cell token {tokens[bad[0]]!r} at position {bad[0]}")
    return out


def to_face_ij(ids: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face and leaf (i, j) of each id's lowest-numbered corner cell path (inverse Hilbert walk)."""
    ids = np.asarray(ids, dtype=_U64)
    face = (ids >> _U64(POS_BITS)).astype(np.int64)
    bits = face & SWAP_MASK
    i = np.zeros(ids.shape, dtype=np.int64)
    j = np.zeros(ids.shape, dtype=np.int64)
    for k in range(7, -1, -1):
        nbits = MAX_LEVEL - 7 * LOOKUP_BITS if k == 7 else LOOKUP_BITS
        chunk = ((ids >> _U64(k * 2 * LOOKUP_BITS + 1)) & _U64((1 << (2 * nbits)) - 1)).astype(np.int64)
        bits = LOOKUP_IJ[bits + (chunk << 2)]
        i += (bits >> (LOOKUP_BITS + 2)) << (k * LOOKUP_BITS)
        j += ((bits >> 2) & ((1 << LOOKUP_BITS) - 1)) << (k * LOOKUP_BITS)
        bits = bits & (SWAP_MASK | INVERT_MASK)
    return face, i, j


def cell_corners(ids: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Latitudes and longitudes (N, 4) of each cell's corners, counter-clockwise."""
    ids = np.asarray(ids, dtype=_U64)
    level = level_of(ids)
    face, i, j = to_face_ij(ids)
    size = np.int64(1) << (MAX_LEVEL - level)
    i0 = i & ~(size - 1)
    j0 = j & ~(size - 1)
    corner_i = np.stack([i0, i0 + size, i0 + size, i0], axis=1)
    corner_j = np.stack([j0, j0, j0 + size, j0 + size], axis=1)
    u = _st_to_uv(corner_i / MAX_SIZE)
    v = _st_to_uv(corner_j / MAX_SIZE)
    xyz = face_uv_to_xyz(np.repeat(face[:, None], 4, axis=1), u, v)
    return from_unit_vectors(xyz)


def cell_centers(ids: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude of each cell's centre (midpoint in (s, t))."""
    ids = np.asarray(ids, dtype=_U64)
    level = level_of(ids)
    face, i, j = to_face_ij(ids)
    size = np.int64(1) << (MAX_LEVEL - level)
    s = ((i & ~(size - 1)) + size / 2) / MAX_SIZE
    t = ((j & ~(size - 1)) + size / 2) / MAX_SIZE
    xyz = face_uv_to_xyz(face, _st_to_uv(s), _st_to_uv(t))
    return from_unit_vectors(xyz)


def cell_polygons(ids: ArrayLike, per_edge: int = 8) -> np.ndarray:
    """(N, 4*per_edge, 2) lon/lat outlines of cells, edges densified in (s, t).

    Longitudes are unwrapped around each cell's first vertex (they may exceed ±180), so a
    cell across the antimeridian is one contiguous polygon for ``PlateCarree`` plotting.
    """
    ids = np.asarray(ids, dtype=_U64)
    level = level_of(ids)
    face, i, j = to_face_ij(ids)
    size = (np.int64(1) << (MAX_LEVEL - level)).astype(np.float64)
    i0 = (i & ~((np.int64(1) << (MAX_LEVEL - level)) - 1)).astype(np.float64)
    j0 = (j & ~((np.int64(1) << (MAX_LEVEL - level)) - 1)).astype(np.float64)
    f = np.linspace(0.0, 1.0, per_edge, endpoint=False)
    di = np.concatenate([f, np.ones_like(f), 1 - f, np.zeros_like(f)])
    dj = np.concatenate([np.zeros_like(f), f, np.ones_like(f), 1 - f])
    s = (i0[:, None] + size[:, None] * di[None, :]) / MAX_SIZE
    t = (j0[:, None] + size[:, None] * dj[None, :]) / MAX_SIZE
    xyz = face_uv_to_xyz(np.repeat(face[:, None], s.shape[1], axis=1), _st_to_uv(s), _st_to_uv(t))
    lat, lon = from_unit_vectors(xyz)
    lon = lon[:, :1] + (lon - lon[:, :1] + 180.0) % 360.0 - 180.0
    return np.stack([lon, lat], axis=-1)
