"""Adaptive S2 partitionings: build (GeoEstimation's algorithm), read/write the published
cells CSV, assign coordinates to classes, and relate partitionings into a hierarchy."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from geomtl_core.errors import InputError
from geomtl_core.geo import s2
from geomtl_core.geo.geodesy import from_unit_vectors, to_unit_vectors, validate_coordinates

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

CELLS_COLUMNS = ["class_label", "hex_id", "imgs_per_cell", "latitude_mean", "longitude_mean"]


class CellsFileError(InputError):
    """A cells CSV that does not follow the published format; names the line."""


@dataclass
class Partitioning:
    """One set of disjoint S2 cells = classes, with each class's mean coordinate.

    ``cell_ids[k]`` is the S2 cell of class ``class_label[k]``; arrays are ordered by
    class label (0..n-1), the order of the classifier's outputs.
    """

    cell_ids: np.ndarray
    counts: np.ndarray
    lat_mean: np.ndarray
    lon_mean: np.ndarray
    num_images: int | None = None
    """The header's ``num_images``: how many input coordinates the partitioning was built from
    (GeoEstimation's files say 4,723,695 in all three), not how many landed in kept cells."""
    name: str = ""
    _order: np.ndarray = field(init=False, repr=False)
    _lo: np.ndarray = field(init=False, repr=False)
    _hi: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.cell_ids = np.asarray(self.cell_ids, dtype=np.uint64)
        self._order = np.argsort(s2.range_min(self.cell_ids), kind="stable")
        self._lo = s2.range_min(self.cell_ids)[self._order]
        self._hi = s2.range_max(self.cell_ids)[self._order]
        overlap = np.flatnonzero(self._lo[1:] <= self._hi[:-1])
        if len(overlap):
            a, b = self._order[overlap[0]], self._order[overlap[0] + 1]
            raise CellsFileError(
                f"{self.name or 'partitioning'}: cells of classes {a} and {b} overlap "
                f"({s2.to_token(self.cell_ids[[a]])[0]} / {s2.to_token(self.cell_ids[[b]])[0]}); "
                "cells of one partitioning must be disjoint"
            )

    def __len__(self) -> int:
        return len(self.cell_ids)

    @property
    def points_in_cells(self) -> int:
        """Training points that fall in a kept cell (the sum of ``imgs_per_cell``)."""
        return int(self.counts.sum())

    @property
    def tokens(self) -> list[str]:
        """S2 tokens (the ``hex_id`` column)."""
        return s2.to_token(self.cell_ids)

    @property
    def levels(self) -> np.ndarray:
        """S2 level of each class's cell."""
        return s2.level_of(self.cell_ids)

    def class_of_cell_ids(self, ids: np.ndarray) -> np.ndarray:
        """Class containing each (leaf or cell) id, or -1: one binary search over disjoint ranges."""
        ids = np.asarray(ids, dtype=np.uint64)
        pos = np.searchsorted(self._lo, ids, side="right") - 1
        inside = (pos >= 0) & (ids <= self._hi[np.clip(pos, 0, None)])
        return np.where(inside, self._order[np.clip(pos, 0, None)], -1)

    def assign(self, lat: ArrayLike, lon: ArrayLike, labels: ArrayLike | None = None) -> np.ndarray:
        """Class of each coordinate (its first S2 ancestor in the partitioning), -1 if none."""
        lat_a, lon_a = validate_coordinates(lat, lon, labels=labels)
        return self.class_of_cell_ids(s2.cell_ids(lat_a, lon_a))

    def class_coordinates(self, classes: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Mean training coordinates of the given classes (the predicted location)."""
        c = np.asarray(classes)
        return self.lat_mean[c], self.lon_mean[c]

    def to_frame(self) -> pd.DataFrame:
        """The published columns as a DataFrame (one row per class)."""
        return pd.DataFrame(
            {
                "class_label": np.arange(len(self)),
                "hex_id": self.tokens,
                "imgs_per_cell": self.counts,
                "latitude_mean": self.lat_mean,
                "longitude_mean": self.lon_mean,
            }
        )


def partition_name(tau_min: int, tau_max: int) -> str:
    """The name of the partitioning built with these thresholds (its heads, methods and cells CSV go by it).

    >>> partition_name(10, 300)
    'cells_10_300'
    """
    return f"cells_{int(tau_min)}_{int(tau_max)}"


def build_partitionings(
    lat: ArrayLike,
    lon: ArrayLike,
    tau_max: list[int] | tuple[int, ...] = (5000, 2000, 1000),
    tau_min: int = 50,
    lvl_min: int = 2,
    lvl_max: int = 30,
) -> list[Partitioning]:
    """Build one partitioning per ``tau_max`` from the same coordinates (leaf ids computed once).

    Algorithm (GeoEstimation): all points start in their level-``lvl_min`` cell; cells with
    ``<= tau_min`` points are dropped with their points; every cell with ``> tau_max``
    points and level ``< lvl_max`` is split into its children, until none is; then cells
    with ``<= tau_min`` points are dropped again. Class coordinates are the mean of the
    member points' unit vectors (so cells across the antimeridian or at a pole average
    correctly), converted back to latitude/longitude.
    """
    lat_a, lon_a = validate_coordinates(lat, lon)
    if lat_a.size == 0:
        raise InputError("cannot build a partitioning from zero coordinates")
    if not 0 <= lvl_min <= lvl_max <= s2.MAX_LEVEL:
        raise InputError(f"need 0 <= lvl_min <= lvl_max <= 30, got {lvl_min}, {lvl_max}")
    leaves = s2.cell_ids(lat_a, lon_a)
    xyz = to_unit_vectors(lat_a, lon_a)
    return [_build_one(leaves, xyz, int(t), tau_min, lvl_min, lvl_max, len(lat_a)) for t in tau_max]


def _build_one(
    leaves: np.ndarray, xyz: np.ndarray, tau_max: int, tau_min: int, lvl_min: int, lvl_max: int, n_total: int
) -> Partitioning:
    if tau_max <= tau_min:
        raise InputError(f"tau_max ({tau_max}) must exceed tau_min ({tau_min})")
    cells, counts = np.unique(s2.parent(leaves, lvl_min), return_counts=True)
    active = cells[counts > tau_min]  # first drop
    final: list[np.ndarray] = []
    level = lvl_min
    members = np.isin(s2.parent(leaves, lvl_min), active)
    idx = np.flatnonzero(members)
    while idx.size:
        cur = s2.parent(leaves[idx], level)
        uniq, inv, cnt = np.unique(cur, return_inverse=True, return_counts=True)
        split = (cnt > tau_max) & (level < lvl_max)
        final.append(uniq[~split])
        idx = idx[split[inv]]
        level += 1
    cell_ids = np.sort(np.concatenate(final)) if final else np.empty(0, np.uint64)
    # membership and counts over final cells, then the second drop
    part = Partitioning(cell_ids, np.zeros(len(cell_ids), np.int64), np.zeros(len(cell_ids)), np.zeros(len(cell_ids)))
    cls = part.class_of_cell_ids(leaves)
    counts = np.bincount(cls[cls >= 0], minlength=len(cell_ids))
    keep = counts > tau_min
    cell_ids, counts = cell_ids[keep], counts[keep]
    remap = np.full(len(keep), -1)
    remap[keep] = np.arange(keep.sum())
    cls = np.where(cls >= 0, remap[np.clip(cls, 0, None)], -1)
    sums = np.zeros((len(cell_ids), 3))
    ok = cls >= 0
    for k in range(3):
        sums[:, k] = np.bincount(cls[ok], weights=xyz[ok, k], minlength=len(cell_ids))
    lat_m, lon_m = from_unit_vectors(sums)
    return Partitioning(cell_ids, counts, lat_m, lon_m, num_images=n_total, name=partition_name(tau_min, tau_max))


def write_cells_csv(part: Partitioning, path: str | Path) -> Path:
    """Write the published format: two header lines, then the five columns.

    ``num_images`` is the number of input coordinates; a partitioning that does not know it (built by
    hand) writes the number of points in its cells instead.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        fh.write(f"num_images: {part.num_images if part.num_images is not None else int(part.counts.sum())}\n")
        fh.write("min_concept_probability: ---\n")
        w = csv.writer(fh)
        w.writerow(CELLS_COLUMNS)
        for k, tok in enumerate(part.tokens):
            w.writerow([k, tok, int(part.counts[k]), repr(float(part.lat_mean[k])), repr(float(part.lon_mean[k]))])
    return path


def read_cells_csv(path: str | Path) -> Partitioning:
    """Read a published cells file (``cells_50_5000.csv`` …); errors name the line."""
    path = Path(path)
    lines = path.read_text().splitlines()
    if len(lines) < 3:
        raise CellsFileError(f"{path}: expected 2 header lines and a column header, got {len(lines)} lines")
    num_images = None
    if lines[0].startswith("num_images:"):
        try:
            num_images = int(lines[0].split(":", 1)[1])
        except ValueError as exc:
            raise CellsFileError(f"{path}:1: bad num_images line {lines[0]!r}") from exc
    else:
        raise CellsFileError(f"{path}:1: expected 'num_images: N', got {lines[0]!r}")
    header = [h.strip() for h in lines[2].split(",")]
    missing = [c for c in CELLS_COLUMNS if c not in header]
    if missing:
        raise CellsFileError(f"{path}:3: missing columns {missing}; header is {header}")
    col = {c: header.index(c) for c in CELLS_COLUMNS}
    rows = list(csv.reader(lines[3:]))
    n = len(rows)
    if n == 0:
        raise CellsFileError(f"{path}: no cells")
    labels = np.empty(n, np.int64)
    tokens: list[str] = []
    counts = np.empty(n, np.int64)
    lat = np.empty(n)
    lon = np.empty(n)
    for k, r in enumerate(rows):
        line = k + 4
        try:
            labels[k] = int(r[col["class_label"]])
            tokens.append(r[col["hex_id"]].strip())
            counts[k] = int(r[col["imgs_per_cell"]])
            lat[k] = float(r[col["latitude_mean"]])
            lon[k] = float(r[col["longitude_mean"]])
        except (ValueError, IndexError) as exc:
            raise CellsFileError(f"{path}:{line}: malformed row {r!r}") from exc
        try:
            s2.from_token([tokens[-1]])
        except ValueError as exc:
            raise CellsFileError(f"{path}:{line}: {exc}") from exc
    validate_coordinates(lat, lon, what="class coordinates", labels=[f"line {k + 4}" for k in range(n)])
    order = np.argsort(labels)
    if not np.array_equal(labels[order], np.arange(n)):
        dup = np.flatnonzero(np.diff(labels[order]) == 0)
        where = f"duplicate class_label {labels[order][dup[0]]}" if len(dup) else "class labels are not 0..n-1"
        raise CellsFileError(f"{path}: {where}")
    ids = s2.from_token([tokens[i] for i in order])
    uniq, first, cnt = np.unique(ids, return_index=True, return_counts=True)
    if (cnt > 1).any():
        tok = tokens[order[first[np.argmax(cnt > 1)]]]
        lines_dup = [int(order[i]) + 4 for i in np.flatnonzero(ids == uniq[np.argmax(cnt > 1)])]
        raise CellsFileError(f"{path}: duplicate hex_id {tok!r} at lines {lines_dup}")
    return Partitioning(ids, counts[order], lat[order], lon[order], num_images=num_images, name=path.stem)


@dataclass(frozen=True)
class Hierarchy:
    """For every class of the finest partitioning, its class in each partitioning (coarse → fine).

    ``matrix[c, k]`` is the class in partitioning ``k`` containing fine class ``c`` (-1 if none);
    the last column is ``arange(n_fine)``.
    """

    matrix: np.ndarray
    orphans: dict[int, np.ndarray]

    def scores(self, probs: list[np.ndarray]) -> np.ndarray:
        """Hierarchical score (batch, n_fine): the product of each level's probability (f*)."""
        if len(probs) != self.matrix.shape[1]:
            raise ValueError(f"expected {self.matrix.shape[1]} probability arrays, got {len(probs)}")
        out = np.ones((probs[0].shape[0], self.matrix.shape[0]))
        for k, p in enumerate(probs):
            col = self.matrix[:, k]
            out *= np.where(col >= 0, np.asarray(p)[:, np.clip(col, 0, None)], 0.0)
        return out


def relate(partitionings: list[Partitioning]) -> Hierarchy:
    """Hierarchy of partitionings ordered coarse → fine, by S2 containment of the fine cells."""
    fine = partitionings[-1]
    cols = []
    orphans: dict[int, np.ndarray] = {}
    for k, part in enumerate(partitionings):
        cls = part.class_of_cell_ids(fine.cell_ids)
        deeper = (cls >= 0) & (part.levels[np.clip(cls, 0, None)] > fine.levels)
        cls = np.where(deeper, -1, cls)
        if (cls < 0).any():
            orphans[k] = np.flatnonzero(cls < 0)
        cols.append(cls)
    return Hierarchy(np.stack(cols, axis=1), orphans)
