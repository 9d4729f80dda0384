"""Tables of coordinates: find the latitude/longitude columns by their usual names."""

from __future__ import annotations

from pathlib import Path

from geomtl_core.data.layouts import Layout, detect_layout
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
    """Read an image metadata CSV into the canonical table ``img_id, lat, lon[, s3, s16, s365, p_*]``.

    The layout is detected from the header; coordinates are taken by column name, so the
    YFCC100M order (lon before lat) is never swapped. Raises :class:`MetadataError`
    naming missing columns, invalid coordinates (by image id) and duplicate ids.
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype={"IMG_ID": str, "name": str}, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError as exc:
        raise MetadataError(f"{path}: empty file") from exc
    layout = detect_metadata_layout(df.columns)
    out = pd.DataFrame({k: df[v] for k, v in layout.columns.items()})
    out["img_id"] = out["img_id"].astype(str)
    for name in ("lat", "lon"):
        out[name] = pd.to_numeric(out[name], errors="coerce")
    for src, dst in {**SCENE_COLUMNS, **PROB_COLUMNS}.items():
        if src in df.columns:
            out[dst] = df[src]
    for src in df.columns:  # further label columns, e.g. KG_Label -> kg (auxiliary tasks)
        if src.endswith("_Label") and src not in SCENE_COLUMNS:
            out[src[: -len("_Label")].lower()] = df[src]
    from geomtl_core.geo.geodesy import InvalidCoordinatesError, validate_coordinates

    try:
        validate_coordinates(out["lat"], out["lon"], what=f"coordinates in {path.name}", labels=out["img_id"])
    except InvalidCoordinatesError as exc:
        raise MetadataError(str(exc)) from exc
    dup = out["img_id"].duplicated(keep=False)
    if dup.any():
        ids = out.loc[dup, "img_id"].unique()[:5].tolist()
        raise MetadataError(f"{path}: {int(dup.sum())} rows share duplicate image ids, e.g. {ids}")
    for col in [c for c in out.columns if c not in CANONICAL and not c.startswith("p_")]:
        if col in out and out[col].isna().any():
            missing = out.loc[out[col].isna(), "img_id"].tolist()[:5]
            raise MetadataError(f"{path}: missing {col} labels for ids {missing}")
        if col in out:
            out[col] = out[col].astype(np.int64)
    out.attrs["layout"] = layout.name
    out.attrs["source"] = str(path)
    return out
