"""Tables of coordinates: find the latitude/longitude columns by their usual names."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from geomtl_core.data.layouts import Layout, detect_layout
from geomtl_core.data.truth import read_locations, to_floats
from geomtl_core.errors import InputError

import numpy as np
import pandas as pd


def coordinate_columns(columns: list[str] | pd.Index) -> tuple[str, str]:
    """Names of the latitude and longitude columns (case-insensitive, order-independent)."""
    cols = detect_layout(columns, "coordinates").columns
    return cols["lat"], cols["lon"]


def read_coordinates_csv(path: str | Path) -> tuple[pd.DataFrame, str, str]:
    """A CSV with coordinate columns: the table and the names of its lat/lon columns."""
    path = Path(path)
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"{path}: empty file, expected a CSV with latitude/longitude columns") from exc
    if df.empty:
        raise InputError(f"{path}: no rows")
    lat, lon = coordinate_columns(df.columns)
    return df, lat, lon


# --- image metadata tables ------------------------------------------------------------

CANONICAL = ["img_id", "lat", "lon"]
SCENE_COLUMNS = {"S3_Label": "s3", "S16_Label": "s16", "S365_Label": "s365"}
PROB_COLUMNS = {"Prob_indoor": "p_indoor", "Prob_natural": "p_natural", "Prob_urban": "p_urban"}

class MetadataError(InputError):
    """A metadata table that is missing columns or holds invalid rows; names them."""


def detect_metadata_layout(columns: list[str] | pd.Index) -> Layout:
    """Which published metadata layout a header is (by column names, never by position)."""
    try:
        return detect_layout(columns, "metadata")
    except InputError as exc:
        raise MetadataError(str(exc)) from exc


def read_metadata(path: str | Path) -> pd.DataFrame:
    """A copy of :func:`_read_metadata`'s table, parsed once per file version in a process (every run of a
    grid reads the same split CSVs, and the line-numbering reader costs about a second per 100K rows)."""
    stat = Path(path).stat() if Path(path).is_file() else None
    if stat is None:
        return _read_metadata(Path(path))
    out = _read_metadata_version(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size).copy()
    out.attrs = {**out.attrs, "source": str(path)}
    return out


@lru_cache(maxsize=16)
def _read_metadata_version(path: str, mtime_ns: int, size: int) -> pd.DataFrame:
    """:func:`_read_metadata` of one version (path, modification time, size) of a file."""
    return _read_metadata(Path(path))


def _read_metadata(path: Path) -> pd.DataFrame:
    """Read an image metadata table into the canonical table ``img_id, lat, lon[, s3, s16, s365, p_*]``.

    The file is read by :func:`geomtl_core.data.truth.read_locations`, the one reader of truth and metadata
    files (CSV or TSV, any known layout, a header or none; coordinates by column name, so the YFCC100M order,
    lon before lat, is never swapped; rows without coordinates skipped and counted in ``attrs["skipped"]``).
    Raises :class:`MetadataError` naming missing columns, invalid coordinates (by image id and line),
    duplicate ids (with their lines) and missing labels.
    """
    path = Path(path)
    try:
        table = read_locations(path)
    except InputError as exc:
        raise MetadataError(str(exc)) from exc
    out = table[CANONICAL].copy()
    labels = {dst: src for src, dst in SCENE_COLUMNS.items() if src in table.columns}
    for src in table.columns:  # further label columns, e.g. KG_Label -> kg (auxiliary tasks)
        if src.endswith("_Label") and src not in SCENE_COLUMNS:
            labels[src[: -len("_Label")].lower()] = src
    for dst, src in labels.items():
        values = to_floats(table[src].tolist())
        bad = np.isnan(values) | (values != np.round(values))
        if bad.any():
            missing = [f"{i} (line {n})" for i, n in zip(table.loc[bad, "img_id"][:5], table.loc[bad, "line"][:5],
                                                        strict=True)]
            raise MetadataError(f"{path}: missing or non-integer {dst} labels ({src}) for ids {missing}")
        out[dst] = values.astype(np.int64)
    for src, dst in PROB_COLUMNS.items():
        if src in table.columns:
            out[dst] = to_floats(table[src].tolist())
    out.attrs.update(layout=table.attrs["layout"], source=str(path), skipped=table.attrs["skipped"],
                     skipped_lines=table.attrs["skipped_lines"])
    return out
