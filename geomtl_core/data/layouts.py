"""Which columns of a CSV hold what: the one place file layouts are recognised, by column name only.

Metadata tables (GeoEstimation's ``IMG_ID,LAT,LON``, YFCC25600's ``name,lat,lon``, YFCC100M's dump with
``lon`` before ``lat``), per-image prediction files (GeoEstimation's published layout, geomtl's own) and
plain coordinate tables (any of the usual latitude/longitude names). Canonical keys: ``img_id``, ``lat``,
``lon`` (true location), ``pred_lat``, ``pred_lon``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from geomtl_core.errors import InputError

LAT_NAMES = ("lat", "latitude", "gt_lat")
LON_NAMES = ("lon", "lng", "long", "longitude", "gt_long")


@dataclass(frozen=True)
class Layout:
    """A named layout: canonical key -> the file's column name; ``marker`` columns tell it apart."""

    name: str
    kind: str  # "metadata" or "predictions" or "coordinates"
    columns: dict[str, str]
    marker: frozenset[str] = field(default_factory=frozenset)


LAYOUTS = (
    Layout("geoestimation", "metadata", {"img_id": "IMG_ID", "lat": "LAT", "lon": "LON"}),
    # the YFCC100M dump (YFCC4k): lon comes before lat, ids in `name`; told apart by its own columns
    Layout("yfcc100m", "metadata", {"img_id": "name", "lat": "lat", "lon": "lon"},
           frozenset({"RecordNumber", "PhotoURL"})),
    Layout("yfcc25600", "metadata", {"img_id": "name", "lat": "lat", "lon": "lon"}),
    Layout("geoestimation", "predictions", {"img_id": "img_id", "lat": "gt_lat", "lon": "gt_long",
                                            "pred_lat": "predicted_lat", "pred_lon": "predicted_long"}),
    Layout("geomtl", "predictions", {"img_id": "img_id", "lat": "true_lat", "lon": "true_lon",
                                     "pred_lat": "pred_lat", "pred_lon": "pred_lon"}),
)


def detect_layout(columns, kind: str) -> Layout:
    """The layout of a header (``kind``: metadata, predictions or coordinates), by column names only.

    >>> detect_layout(["name", "lon", "lat", "PhotoURL"], "metadata").name
    'yfcc100m'
    >>> detect_layout(["Latitude", "LNG"], "coordinates").columns
    {'lat': 'Latitude', 'lon': 'LNG'}
    """
    cols = {str(c).strip() for c in columns}
    if kind == "coordinates":
        lower = {c.lower(): c for c in cols}
        lat = next((lower[n] for n in LAT_NAMES if n in lower), None)
        lon = next((lower[n] for n in LON_NAMES if n in lower), None)
        if lat is None or lon is None:
            raise InputError(f"no latitude/longitude columns among {list(columns)}; expected one of {LAT_NAMES} "
                             f"and one of {LON_NAMES} (any case)")
        return Layout("coordinates", "coordinates", {"lat": lat, "lon": lon})
    candidates = [lay for lay in LAYOUTS if lay.kind == kind]
    if not candidates:
        raise ValueError(f"unknown layout kind {kind!r}")
    for lay in candidates:
        if set(lay.columns.values()) <= cols and (not lay.marker or lay.marker & cols):
            return lay
    wanted = " or ".join(f"{','.join(lay.columns.values())} ({lay.name})" for lay in candidates)
    raise InputError(f"unknown {kind} layout: columns {list(columns)[:12]} lack {wanted}")
