"""Offline reverse geocoding of predicted coordinates: the nearest GeoNames place (cities > 1000
inhabitants, shipped in the ``reverse_geocoder`` package) and the country's English name."""

from __future__ import annotations

import numpy as np


def reverse_geocode(lat: np.ndarray, lon: np.ndarray) -> list[dict[str, str]]:
    """Nearest GeoNames place (cities > 1000 inhabitants) of each coordinate, offline, one batched query."""
    if len(lat) == 0:
        return []
    import reverse_geocoder as rg

    hits = rg.search([(float(a), float(b)) for a, b in zip(lat, lon, strict=True)], mode=1, verbose=False)
    return [{"place": h["name"], "admin1": h["admin1"], "country": country_name(h["cc"]), "country_code": h["cc"]}
            for h in hits]


_COUNTRIES: dict[str, str] | None = None


def country_name(code: str) -> str:
    """English name of an ISO 3166 alpha-2 code (Babel's CLDR data when installed), else the code."""
    global _COUNTRIES
    if _COUNTRIES is None:
        try:
            from babel import Locale

            _COUNTRIES = dict(Locale("en").territories)
        except ImportError:  # pragma: no cover - babel comes with the book tooling
            _COUNTRIES = {}
    return _COUNTRIES.get(code, code)
