"""Hybrid geolocation: a cell classifier narrows the search, retrieval among gallery images refines it.

Plain retrieval (:func:`knn_locate`) predicts from the ``k`` gallery images most similar to a query: the nearest
one's location, or, as in Vo, Jacobs & Hays, "Revisiting IM2GPS in the deep-learning era" (ICCV 2017), the mode
of a Gaussian kernel density over the neighbours' locations (here restricted to those locations), so that one
look-alike far away does not outvote a cluster. The hybrid (:func:`hybrid_locate`) searches only the gallery
images inside the classifier's most probable fine cells and weights each neighbour by its similarity times its
cell's probability, as PIGEON (Haas et al., CVPR 2024) refines inside its top geocells: the classifier decides
the region, retrieval the point within it. :func:`choose` picks ``top_cells``, ``k`` and the kernel on
validation data only.

Search uses faiss: exact inner-product search with the top-k kept as it goes (no queries x gallery matrix in
memory), well maintained, on CPU; it is imported lazily so that :mod:`geomtl_core.geo` stays importable without it.
Global kNN searches an ``IndexFlatIP``; the within-cell search is a dense product of the queries that rank a cell
with that cell's images (a contiguous slice: the gallery is stored sorted by cell), small since candidate sets are,
done by ``faiss.knn`` per cell rather than numpy's ``@`` because thousands of small products through a threaded
BLAS stall on busy cores (14 s against 0.6 s for 10,000 queries on a busy 2-core Intel Xeon).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

from geomtl_core.errors import InputError
from geomtl_core.files import atomic_path
from geomtl_core.geo.geodesy import haversine_km, validate_coordinates
from geomtl_core.geo.protocol import PRIMARY_KM

import numpy as np
from numpy.typing import ArrayLike

HYBRID_KEYS = ("top_cells", "k", "kernel_km")
"""The hyperparameters of :func:`hybrid_locate` that :func:`choose` tunes."""
_CHUNK = 16_384
"""Queries per block of the within-cell search (its buffers: 12 bytes x top_cells x k per query)."""


def _rows(rows: np.ndarray, limit: int = 10) -> str:
    more = f" (and {len(rows) - limit} more)" if len(rows) > limit else ""
    return ", ".join(str(r) for r in rows[:limit]) + more


def _unit_rows(x: ArrayLike, what: str, dim: int | None = None) -> np.ndarray:
    """Rows of ``x`` scaled to unit length as float32, or InputError naming the shape or the bad rows."""
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 2 or 0 in a.shape:
        raise InputError(f"{what}: expected a non-empty 2-D array (rows, dims), got shape {a.shape}")
    if dim is not None and a.shape[1] != dim:
        raise InputError(f"{what}: {a.shape[1]} dims per row, the gallery's embeddings have {dim}")
    bad = np.flatnonzero(~np.isfinite(a).all(axis=1))
    if len(bad):
        raise InputError(f"{what}: {len(bad)} rows with NaN or inf at rows: {_rows(bad)}")
    norm = np.linalg.norm(a, axis=1, keepdims=True)
    zero = np.flatnonzero(norm[:, 0] == 0)
    if len(zero):
        raise InputError(f"{what}: {len(zero)} all-zero rows (no direction to compare) at rows: {_rows(zero)}")
    return a / norm


def _faiss() -> Any:
    """faiss, imported on first use: the geo layer imports without it."""
    import faiss

    return faiss


def _check_k(k: int, kernel_km: float | None) -> None:
    if int(k) != k or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    if kernel_km is None and k > 1:
        raise InputError(f"k={k} neighbours need kernel_km (the density's bandwidth in km); only k=1 goes without")
    if kernel_km is not None and not (np.isfinite(kernel_km) and kernel_km > 0):
        raise InputError(f"kernel_km must be a positive number of km, got {kernel_km!r}")


@dataclass(eq=False)
class Gallery:
    """Reference images for retrieval: unit float32 embeddings with their locations and fine cells (-1: none).

    Rows are sorted by cell so that each cell's images are one contiguous slice; make one with :meth:`build`.
    """

    emb: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    cell: np.ndarray
    n_cells: int
    """Classes in the finest partitioning (``len(part)``): the columns expected in ``cell_probs``."""
    _index: Any = field(default=None, init=False, repr=False)
    _bounds: np.ndarray | None = field(default=None, init=False, repr=False)

    @classmethod
    def build(cls, emb: ArrayLike, lat: ArrayLike, lon: ArrayLike, cell: ArrayLike,
              n_cells: int | None = None) -> Gallery:
        """Validate, normalise the rows and sort by cell; ``n_cells`` defaults to the largest cell + 1."""
        e = _unit_rows(emb, "gallery embeddings")
        n = len(e)
        lat_a, lon_a, cell_a = np.asarray(lat, np.float64), np.asarray(lon, np.float64), np.asarray(cell)
        for name, a in (("latitudes", lat_a), ("longitudes", lon_a), ("cells", cell_a)):
            if a.shape != (n,):
                raise InputError(f"gallery {name}: expected shape ({n},) to match the embeddings, got {a.shape}")
        lat_a, lon_a = validate_coordinates(lat_a, lon_a, what="gallery coordinates")
        if not np.issubdtype(cell_a.dtype, np.integer):
            raise InputError(f"gallery cells: expected integer class labels (-1 for none), got dtype {cell_a.dtype}")
        cell_a = cell_a.astype(np.int64)
        n_cells = int(cell_a.max()) + 1 if n_cells is None else int(n_cells)
        bad = np.flatnonzero((cell_a < -1) | (cell_a >= n_cells))
        if len(bad):
            raise InputError(f"gallery cells: {len(bad)} labels outside -1..{n_cells - 1} at rows: {_rows(bad)}")
        if (np.diff(cell_a) < 0).any():
            order = np.argsort(cell_a, kind="stable")
            e, lat_a, lon_a, cell_a = e[order], lat_a[order], lon_a[order], cell_a[order]
        return cls(e, lat_a, lon_a, cell_a, n_cells)

    def __len__(self) -> int:
        return len(self.emb)

    @property
    def dim(self) -> int:
        """Embedding dimensions."""
        return self.emb.shape[1]

    def cell_bounds(self) -> np.ndarray:
        """Row range of each cell: its images are rows ``bounds[c]:bounds[c + 1]`` (needs rows sorted by cell)."""
        if self._bounds is None:
            if (np.diff(self.cell) < 0).any():
                raise InputError("gallery rows are not sorted by cell; make the gallery with Gallery.build")
            self._bounds = np.searchsorted(self.cell, np.arange(self.n_cells + 1), side="left")
        return self._bounds

    def search(self, query_emb: ArrayLike, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact global kNN by cosine similarity: (similarities, rows), each (queries, min(k, len)), best first."""
        return self._search(_unit_rows(query_emb, "query embeddings", self.dim), k)

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._index is None:
            faiss = _faiss()
            index = faiss.IndexFlatIP(self.dim)
            index.add(np.ascontiguousarray(self.emb, np.float32))
            self._index = index
        sims, rows = self._index.search(np.ascontiguousarray(q, np.float32), min(int(k), len(self)))
        return sims, rows.astype(np.int64)

    def as_float16(self) -> Gallery:
        """The gallery as :meth:`to_npz` stores it and :meth:`from_npz` reads it back: float16 embeddings,
        renormalised (what a bundle searches)."""
        return Gallery.build(self.emb.astype(np.float16).astype(np.float32), self.lat, self.lon, self.cell,
                             self.n_cells)

    def to_npz(self, path: str | Path) -> Path:
        """Write embeddings as float16 (half the disk) with locations and cells, atomically (temporary + rename)."""
        path = Path(path)
        with atomic_path(path) as tmp, tmp.open("wb") as fh:
            np.savez(fh, emb=self.emb.astype(np.float16), lat=self.lat, lon=self.lon, cell=self.cell,
                     n_cells=np.int64(self.n_cells))
        return path

    @classmethod
    def from_npz(cls, path: str | Path) -> Gallery:
        """Read :meth:`to_npz`'s file (validated and renormalised as by :meth:`build`)."""
        with np.load(path) as z:
            missing = [key for key in ("emb", "lat", "lon", "cell", "n_cells") if key not in z.files]
            if missing:
                raise InputError(f"{path}: not a gallery file, missing arrays {missing}")
            return cls.build(z["emb"].astype(np.float32), z["lat"], z["lon"], z["cell"], int(z["n_cells"]))


def _density_mode(lat: np.ndarray, lon: np.ndarray, w: np.ndarray, valid: np.ndarray,
                  kernel_km: float | None) -> np.ndarray:
    """Per row of (m, k) neighbours sorted by similarity, the column whose location has the highest weighted
    Gaussian kernel density sum_j w_j exp(-(d_ij / kernel_km)^2 / 2); ties and all-zero weights: the most similar."""
    best = np.zeros(len(lat), np.int64)
    if lat.shape[1] == 1 or kernel_km is None:
        return best
    step = max(1, 2**22 // lat.shape[1] ** 2)  # rows per block: (rows, k, k) distances of at most 32 MB
    for s in range(0, len(lat), step):
        la, lo = lat[s : s + step], lon[s : s + step]
        d = haversine_km(la[:, :, None], lo[:, :, None], la[:, None, :], lo[:, None, :], validate=False)
        density = np.einsum("mij,mj->mi", np.exp(-0.5 * (d / kernel_km) ** 2), w[s : s + step])
        best[s : s + step] = np.where(valid[s : s + step], density, -np.inf).argmax(axis=1)
    return best


def _locate(gallery: Gallery, rows: np.ndarray, w: np.ndarray, kernel_km: float | None) -> tuple[np.ndarray, ...]:
    """(lat, lon) of each query's density mode among its neighbour ``rows`` (-1: no neighbour, weight 0)."""
    valid = rows >= 0
    safe = np.where(valid, rows, 0)
    lat, lon = gallery.lat[safe], gallery.lon[safe]
    best = _density_mode(lat, lon, np.where(valid, w, 0.0), valid, kernel_km)
    pick = np.arange(len(rows))
    return lat[pick, best], lon[pick, best]


def _weights(sims: np.ndarray) -> np.ndarray:
    # max(sim, 0): no temperature to tune, and a neighbour pointing away from the query (cosine < 0) gets no say
    return np.maximum(sims.astype(np.float64), 0.0)


def knn_locate(gallery: Gallery, query_emb: ArrayLike, k: int = 1,
               kernel_km: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Retrieval alone: k=1 the nearest gallery image's location (as ``knn_baseline``); k>1 the neighbours'
    similarity-weighted kernel-density mode (Vo et al. 2017), bandwidth ``kernel_km``."""
    _check_k(k, kernel_km)
    sims, rows = gallery.search(query_emb, k)
    return _locate(gallery, rows, _weights(sims), kernel_km)


def _cell_probs(cell_probs: ArrayLike, n_queries: int, n_cells: int) -> np.ndarray:
    p = np.asarray(cell_probs)
    if p.ndim != 2 or p.shape[0] != n_queries:
        raise InputError(f"cell_probs: expected shape ({n_queries}, {n_cells}) (queries, cells), got {p.shape}")
    if p.shape[1] != n_cells:
        raise InputError(f"cell_probs: {p.shape[1]} columns, the gallery's partitioning has {n_cells} cells")
    if not np.isfinite(p).all() or (p < 0).any():
        raise InputError("cell_probs: probabilities must be finite and >= 0")
    return p


def _top_cells(p: np.ndarray, top_cells: int) -> np.ndarray:
    """(m, top_cells) indices of each row's most probable cells (unordered), 1,024 rows at a time."""
    t = min(top_cells, p.shape[1])
    if t == p.shape[1]:
        return np.broadcast_to(np.arange(t), (len(p), t))
    return np.concatenate([np.argpartition(-p[i : i + 1024], t - 1, axis=1)[:, :t] for i in range(0, len(p), 1024)])


def _in_cells(gallery: Gallery, q: np.ndarray, top: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k most similar gallery images among each query's top cells: (sims, rows), (m, k), best first; rows -1
    (sims -inf) where fewer than k candidates. Per cell, the exact kNN of the queries that rank it over the cell's
    slice (a loop over cells, none over images); then the best k of each query's top_cells x k."""
    faiss = _faiss()
    bounds = gallery.cell_bounds()
    sims = np.full((len(q), top.shape[1] * k), -np.inf, np.float32)
    rows = np.full((len(q), top.shape[1] * k), -1, np.int64)
    qi, ri = np.nonzero(bounds[top + 1] > bounds[top])
    cells = top[qi, ri]
    by_cell = np.argsort(cells, kind="stable")
    qi, ri, cells = qi[by_cell], ri[by_cell], cells[by_cell]
    cuts = np.flatnonzero(np.diff(cells)) + 1
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(cells)], strict=True):
        if lo == hi:
            continue
        a, b = int(bounds[cells[lo]]), int(bounds[cells[lo] + 1])
        qs, kc = qi[lo:hi], min(k, b - a)
        s, r = faiss.knn(q[qs], gallery.emb[a:b], kc, metric=faiss.METRIC_INNER_PRODUCT)
        cols = ri[lo:hi, None] * k + np.arange(kc)
        sims[qs[:, None], cols], rows[qs[:, None], cols] = s, r + a
    keep = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    s, r = np.take_along_axis(sims, keep, 1), np.take_along_axis(rows, keep, 1)
    order = np.lexsort((r, -s), axis=1)  # by similarity, ties by row: a k search is the prefix of a larger one's
    return np.take_along_axis(s, order, 1), np.take_along_axis(r, order, 1)


def _hybrid_neighbours(gallery: Gallery, q: np.ndarray, p: np.ndarray, top_cells: int,
                       k: int) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour rows (m, k) and their weights (similarity x cell probability) within each query's top cells;
    a query whose top cells hold no gallery image falls back to global kNN, weighted by similarity alone."""
    rows = np.empty((len(q), k), np.int64)
    w = np.empty((len(q), k), np.float64)
    for s in range(0, len(q), _CHUNK):
        sl = slice(s, s + _CHUNK)
        sims, r = _in_cells(gallery, q[sl], _top_cells(p[sl], top_cells), k)
        valid = r >= 0
        prob = np.take_along_axis(p[sl], gallery.cell[np.where(valid, r, 0)], 1)
        rows[sl], w[sl] = r, np.where(valid, _weights(sims) * prob, 0.0)
    empty = np.flatnonzero(rows[:, 0] < 0)
    if len(empty):
        sims, r = gallery._search(q[empty], k)
        rows[empty], w[empty] = -1, 0.0
        rows[empty, : r.shape[1]], w[empty, : r.shape[1]] = r, _weights(sims)
    return rows, w


def hybrid_locate(gallery: Gallery, query_emb: ArrayLike, cell_probs: ArrayLike, top_cells: int = 5, k: int = 10,
                  kernel_km: float | None = 25.0) -> tuple[np.ndarray, np.ndarray]:
    """Kernel-density mode of the k most similar gallery images inside each query's ``top_cells`` most probable
    fine cells (images in no cell are never candidates), each weighted by similarity x its cell's probability.

    A query whose top cells hold no gallery image gets :func:`knn_locate` with the same ``k`` and kernel (global
    search, similarity weights alone): the simplest answer that still uses the image.
    """
    _check_k(k, kernel_km)
    if int(top_cells) != top_cells or top_cells < 1:
        raise InputError(f"top_cells must be a positive integer, got {top_cells!r}")
    q = _unit_rows(query_emb, "query embeddings", gallery.dim)
    p = _cell_probs(cell_probs, len(q), gallery.n_cells)
    rows, w = _hybrid_neighbours(gallery, q, p, int(top_cells), int(k))
    return _locate(gallery, rows, w, kernel_km)


def _grid_points(grid: Mapping[str, Iterable] | Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A grid as a mapping of value lists (their product) or a list of settings; missing keys: the defaults."""
    defaults = {key: inspect.signature(hybrid_locate).parameters[key].default for key in HYBRID_KEYS}
    if isinstance(grid, Mapping):
        settings = [dict(zip(grid, v, strict=True)) for v in product(*grid.values())]
    else:
        settings = [dict(g) for g in grid]
    unknown = sorted({key for g in settings for key in g} - set(HYBRID_KEYS))
    if unknown or not settings:
        raise InputError(f"grid: {'unknown keys ' + str(unknown) if unknown else 'no settings'}; "
                         f"valid keys are {list(HYBRID_KEYS)}")
    points = [{**defaults, **g} for g in settings]
    for g in points:
        _check_k(g["k"], g["kernel_km"])
        if int(g["top_cells"]) != g["top_cells"] or g["top_cells"] < 1:
            raise InputError(f"grid: top_cells must be a positive integer, got {g['top_cells']!r}")
    return points


def choose(gallery: Gallery, val_emb: ArrayLike, val_probs: ArrayLike, val_lat: ArrayLike, val_lon: ArrayLike,
           grid: Mapping[str, Iterable] | Iterable[Mapping[str, Any]], km: float = PRIMARY_KM) -> dict[str, Any]:
    """Pick ``top_cells``, ``k`` and ``kernel_km`` by accuracy within ``km`` on VALIDATION data (never test);
    ties: the smaller k, then fewer top cells, then the smaller kernel. Returns the choice and every grid point."""
    q = _unit_rows(val_emb, "validation embeddings", gallery.dim)
    p = _cell_probs(val_probs, len(q), gallery.n_cells)
    lat, lon = validate_coordinates(val_lat, val_lon, what="validation coordinates")
    if lat.shape != (len(q),):
        raise InputError(f"validation coordinates: expected shape ({len(q)},) to match the embeddings, got {lat.shape}")
    points = _grid_points(grid)
    results = []
    for t in sorted({int(g["top_cells"]) for g in points}):
        mine = [g for g in points if g["top_cells"] == t]
        rows, w = _hybrid_neighbours(gallery, q, p, t, max(int(g["k"]) for g in mine))
        for g in mine:  # a k search is the prefix of the largest k's (both sorted by similarity, then row)
            plat, plon = _locate(gallery, rows[:, : g["k"]], w[:, : g["k"]], g["kernel_km"])
            hits = int((haversine_km(plat, plon, lat, lon, validate=False) <= km).sum())
            results.append({"top_cells": t, "k": int(g["k"]), "kernel_km": g["kernel_km"], "hits": hits})
    best = min(results, key=lambda r: (-r["hits"], r["k"], r["top_cells"],
                                       -np.inf if r["kernel_km"] is None else r["kernel_km"]))
    grid_out = [{key: r[key] for key in HYBRID_KEYS} | {"accuracy": r["hits"] / len(q)} for r in results]
    return {key: best[key] for key in HYBRID_KEYS} | {"accuracy": best["hits"] / len(q), "km": km, "grid": grid_out}
