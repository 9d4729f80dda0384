"""Per-image prediction files: GeoEstimation's published layout and geomtl's own.

GeoEstimation: ``img_id,gt_lat,predicted_lat,gt_long,predicted_long,great_circle_distance``
followed by a blank line and a summary header + row, which we ignore.
geomtl: ``img_id,true_lat,true_lon,pred_lat,pred_lon,error_km`` (extra columns allowed).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from geomtl_core.geodesy import haversine_km, validate_coordinates

import numpy as np

LAYOUTS: dict[str, dict[str, str]] = {
    "geoestimation": {
        "id": "img_id",
        "true_lat": "gt_lat",
        "true_lon": "gt_long",
        "pred_lat": "predicted_lat",
        "pred_lon": "predicted_long",
    },
    "geomtl": {
        "id": "img_id",
        "true_lat": "true_lat",
        "true_lon": "true_lon",
        "pred_lat": "pred_lat",
        "pred_lon": "pred_lon",
    },
}
GEOMTL_COLUMNS = ["img_id", "true_lat", "true_lon", "pred_lat", "pred_lon", "error_km"]


class PredictionFileError(ValueError):
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

    @property
    def errors_km(self) -> np.ndarray:
        """Haversine errors recomputed from the coordinates (never trusted from the file)."""
        return haversine_km(self.true_lat, self.true_lon, self.pred_lat, self.pred_lon, validate=False)


def detect_layout(header: list[str]) -> str:
    """Name of the layout whose required columns are all in ``header``."""
    cols = {h.strip() for h in header}
    for name, spec in LAYOUTS.items():
        if set(spec.values()) <= cols:
            return name
    wanted = " or ".join(",".join(spec.values()) for spec in LAYOUTS.values())
    raise PredictionFileError(f"unknown prediction layout; header {header!r} lacks the columns {wanted}")


def read_predictions(path: str | Path) -> Predictions:
    """Read a per-image prediction CSV, stopping at the first blank line (summary follows)."""
    path = Path(path)
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            raise PredictionFileError(f"{path}: empty file, expected a CSV header")
        header = [h.strip() for h in header]
        layout = detect_layout(header)
        spec = LAYOUTS[layout]
        idx = {k: header.index(v) for k, v in spec.items()}
        rows: list[list[str]] = []
        line_numbers: list[int] = []
        for row in reader:
            if not row or all(not c.strip() for c in row):
                break  # trailing summary block
            if len(row) < len(header):
                raise PredictionFileError(
                    f"{path}:{reader.line_num}: {len(row)} fields, expected {len(header)}"
                )
            rows.append(row)
            line_numbers.append(reader.line_num)
    if not rows:
        raise PredictionFileError(f"{path}: no prediction rows")
    labels = np.array([f"line {n}" for n in line_numbers])

    def column(key: str) -> np.ndarray:
        try:
            return np.array([float(r[idx[key]]) for r in rows])
        except ValueError as exc:
            bad = next(i for i, r in enumerate(rows) if not _is_float(r[idx[key]]))
            raise PredictionFileError(
                f"{path}:{line_numbers[bad]}: column {spec[key]!r} is not a number: {rows[bad][idx[key]]!r}"
            ) from exc

    tl, tn = validate_coordinates(column("true_lat"), column("true_lon"), what="true coordinates", labels=labels)
    pl, pn = validate_coordinates(
        column("pred_lat"), column("pred_lon"), what="predicted coordinates", labels=labels
    )
    ids = np.array([r[idx["id"]] for r in rows], dtype=object)
    return Predictions(ids, tl, tn, pl, pn, layout)


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
