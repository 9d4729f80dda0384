"""Per-image prediction files: GeoEstimation's published layout and geomtl's own.

GeoEstimation: ``img_id,gt_lat,predicted_lat,gt_long,predicted_long,great_circle_distance``
followed by a blank line and a summary header + row, which we ignore.
geomtl: ``img_id,true_lat,true_lon,pred_lat,pred_lon,error_km`` (extra columns allowed), as
``geomtl evaluate`` and ``geomtl predict --csv`` write it. Rows whose true or predicted coordinates are
empty (``predict``: a file that failed, or one with no known truth) are skipped and counted.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from geomtl_core.data.layouts import Layout, detect_layout
from geomtl_core.errors import InputError
from geomtl_core.geo.geodesy import haversine_km, validate_coordinates

import numpy as np

GEOMTL_COLUMNS = ["img_id", "true_lat", "true_lon", "pred_lat", "pred_lon", "error_km"]


class PredictionFileError(InputError):
    """A prediction file that cannot be read as one of the known layouts."""


@dataclass(frozen=True)
class Predictions:
    """Per-image true and predicted coordinates with their great-circle errors."""

    img_id: np.ndarray
    true_lat: np.ndarray
    true_lon: np.ndarray
    pred_lat: np.ndarray
    pred_lon: np.ndarray
    layout: str
    skipped: int = 0  # rows with an empty true or predicted coordinate, left out

    def take(self, index: np.ndarray) -> Predictions:
        """The rows at ``index`` (an integer or boolean array), in that order."""
        return Predictions(self.img_id[index], self.true_lat[index], self.true_lon[index], self.pred_lat[index],
                           self.pred_lon[index], self.layout, self.skipped)

    @property
    def errors_km(self) -> np.ndarray:
        """Haversine errors recomputed from the coordinates (never trusted from the file)."""
        return haversine_km(self.true_lat, self.true_lon, self.pred_lat, self.pred_lon, validate=False)


def detect_prediction_layout(header: list[str]) -> Layout:
    """The prediction layout whose required columns are all in ``header``."""
    try:
        return detect_layout(header, "predictions")
    except InputError as exc:
        raise PredictionFileError(str(exc)) from exc


def read_predictions(path: str | Path) -> Predictions:
    """Read a per-image prediction CSV, stopping at the first blank line (summary follows)."""
    path = Path(path)
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            raise PredictionFileError(f"{path}: empty file, expected a CSV header")
        header = [h.strip() for h in header]
        layout = detect_prediction_layout(header)
        spec = layout.columns
        idx = {k: header.index(v) for k, v in spec.items()}
        rows: list[list[str]] = []
        line_numbers: list[int] = []
        coords = [idx[k] for k in ("lat", "lon", "pred_lat", "pred_lon")]
        skipped = 0
        for row in reader:
            if not row or all(not c.strip() for c in row):
                break  # trailing summary block
            if len(row) < len(header):
                raise PredictionFileError(
                    f"{path}:{reader.line_num}: {len(row)} fields, expected {len(header)}"
                )
            if any(not row[i].strip() for i in coords):
                skipped += 1  # no truth known, or no prediction (a file that failed)
                continue
            rows.append(row)
            line_numbers.append(reader.line_num)
    if not rows:
        why = (f" ({skipped} rows lack true or predicted coordinates: give `geomtl predict` the truth with "
               "--truth FILE, or photos with EXIF GPS)") if skipped else ""
        raise PredictionFileError(f"{path}: no prediction rows with true and predicted coordinates{why}")
    labels = np.array([f"line {n}" for n in line_numbers])

    def column(key: str) -> np.ndarray:
        try:
            return np.array([float(r[idx[key]]) for r in rows])
        except ValueError as exc:
            bad = next(i for i, r in enumerate(rows) if not _is_float(r[idx[key]]))
            raise PredictionFileError(
                f"{path}:{line_numbers[bad]}: column {spec[key]!r} is not a number: {rows[bad][idx[key]]!r}"
            ) from exc

    tl, tn = validate_coordinates(column("lat"), column("lon"), what="true coordinates", labels=labels)
    pl, pn = validate_coordinates(
        column("pred_lat"), column("pred_lon"), what="predicted coordinates", labels=labels
    )
    ids = np.array([r[idx["img_id"]] for r in rows], dtype=object)
    return Predictions(ids, tl, tn, pl, pn, layout.name, skipped)


def write_predictions(
    path: str | Path,
    img_id: np.ndarray,
    true_lat: np.ndarray,
    true_lon: np.ndarray,
    pred_lat: np.ndarray,
    pred_lon: np.ndarray,
    extra: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write predictions in geomtl's layout (readable by :func:`read_predictions`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    err = haversine_km(true_lat, true_lon, pred_lat, pred_lon)
    extra = extra or {}
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(GEOMTL_COLUMNS + list(extra))
        for i in range(len(img_id)):
            w.writerow(
                [img_id[i], f"{true_lat[i]:.6f}", f"{true_lon[i]:.6f}", f"{pred_lat[i]:.6f}",
                 f"{pred_lon[i]:.6f}", f"{err[i]:.3f}"] + [extra[k][i] for k in extra]
            )
    return path


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_unique(ids: np.ndarray, name: str) -> None:
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise PredictionFileError(f"{name}: {int((counts > 1).sum())} duplicated image ids, e.g. "
                                  f"{uniq[counts > 1][:3].tolist()}")


def _examples(ids: np.ndarray) -> str:
    return f" (e.g. {ids[:3].tolist()})" if len(ids) else ""


def align_predictions(a: Predictions, b: Predictions, name_a: str = "A", name_b: str = "B",
                      tolerance_deg: float = 1e-4, *, common: bool = False) -> tuple[Predictions, Predictions]:
    """Both files' rows in one order, matched by image id; an error names ids found in only one file
    (unless ``common``: then only the ids in both are kept, see :func:`common_ids`), duplicated ids, or
    images whose true coordinates disagree."""
    ids_a, ids_b = a.img_id.astype(str), b.img_id.astype(str)
    _check_unique(ids_a, name_a)
    _check_unique(ids_b, name_b)
    only_a, only_b = np.setdiff1d(ids_a, ids_b), np.setdiff1d(ids_b, ids_a)
    if common:
        a = a.take(np.flatnonzero(np.isin(ids_a, ids_b)))
        ids_a = a.img_id.astype(str)
        if not len(ids_a):
            raise PredictionFileError(f"{name_a} and {name_b} have no image id in common")
    elif len(only_a) or len(only_b):
        raise PredictionFileError(
            f"the files do not cover the same images: {len(only_a)} ids only in {name_a}{_examples(only_a)}, "
            f"{len(only_b)} only in {name_b}{_examples(only_b)}; --common compares the images in both")
    order_b = np.argsort(ids_b)[np.searchsorted(np.sort(ids_b), ids_a)]
    b = b.take(order_b)
    off = (np.abs(a.true_lat - b.true_lat) > tolerance_deg) | (np.abs(a.true_lon - b.true_lon) > tolerance_deg)
    if off.any():
        raise PredictionFileError(f"{int(off.sum())} images have different true coordinates in {name_a} and "
                                  f"{name_b}, e.g. {ids_a[off][:3].tolist()}")
    return a, b


def common_ids(a: Predictions, b: Predictions) -> tuple[int, int, int]:
    """(images in both, ids only in ``a``, ids only in ``b``): what ``align_predictions(common=True)`` keeps
    and drops from each side."""
    ids_a, ids_b = a.img_id.astype(str), b.img_id.astype(str)
    both = np.intersect1d(ids_a, ids_b)
    return len(both), len(np.setdiff1d(ids_a, ids_b)), len(np.setdiff1d(ids_b, ids_a))


KEY_NAMES = ("img_id", "image_id", "id", "name", "file", "filename", "file_name", "image", "path", "photo")
"""Columns of a truth table that may identify an image (any case): every one present is used."""


class TruthTable:
    """Known true locations by image id or file name, from a CSV/TSV (:func:`geomtl_core.data.truth.read_truth`).

    :meth:`get` matches a photo's path by its id relative to the folder it was found in, its file name, or
    its stem; a key with folders must match the end of the path.
    """

    def __init__(self, source: str, keys: list[str], lat: np.ndarray, lon: np.ndarray, n_rows: int):
        self.source = source
        self.n = n_rows
        self._by_name: dict[str, list[tuple[tuple[str, ...], float, float]]] = {}
        for key, la, lo in zip(keys, lat.tolist(), lon.tolist(), strict=True):
            parts = Path(key.strip()).parts
            if parts:
                self._by_name.setdefault(parts[-1], []).append((parts, la, lo))

    def get(self, path: str | Path) -> tuple[float, float] | None:
        """The true (lat, lon) of the photo at ``path``, or None if the table does not list it (or lists its
        name with different locations that its path does not tell apart)."""
        path = Path(path)
        found = {}
        for name in (path.name, path.stem):
            for parts, la, lo in self._by_name.get(name, []):
                full = (*path.parts[:-1], name)
                if full[len(full) - len(parts):] == parts:
                    found[(la, lo)] = max(found.get((la, lo), 0), len(parts))
        if not found:
            return None
        best = max(found.values())
        hits = [c for c, n in found.items() if n == best]
        return hits[0] if len(hits) == 1 else None


