"""Tables of coordinates: find the latitude/longitude columns by their usual names."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

LAT_NAMES = ("lat", "latitude", "gt_lat")
LON_NAMES = ("lon", "lng", "long", "longitude", "gt_long")


def coordinate_columns(columns: list[str] | pd.Index) -> tuple[str, str]:
    """Names of the latitude and longitude columns (case-insensitive, order-independent)."""
    lower = {str(c).strip().lower(): str(c) for c in columns}
    lat = next((lower[n] for n in LAT_NAMES if n in lower), None)
    lon = next((lower[n] for n in LON_NAMES if n in lower), None)
    if lat is None or lon is None:
        raise ValueError(
            f"no latitude/longitude columns among {list(columns)}; expected one of {LAT_NAMES} "
            f"and one of {LON_NAMES} (any case)"
        )
    return lat, lon


def read_coordinates_csv(path: str | Path) -> tuple[pd.DataFrame, str, str]:
    """A CSV with coordinate columns: the table and the names of its lat/lon columns."""
    path = Path(path)
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError as exc:
        raise ValueError(f"{path}: empty file, expected a CSV with latitude/longitude columns") from exc
    if df.empty:
        raise ValueError(f"{path}: no rows")
    lat, lon = coordinate_columns(df.columns)
    return df, lat, lon
