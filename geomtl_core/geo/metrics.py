"""Geolocation metrics as in the literature: accuracy within 1/25/200/750/2500 km,
median and mean error, GeoScore, and bootstrap confidence intervals."""

from __future__ import annotations

from dataclasses import dataclass

from geomtl_core.errors import InputError
from geomtl_core.geo.geodesy import haversine_km, validate_coordinates

import numpy as np
from numpy.typing import ArrayLike

THRESHOLDS_KM: tuple[int, ...] = (1, 25, 200, 750, 2500)
"""Street, city, region, country and continent scales (Hays & Efros 2008)."""

GEOSCORE_SCALE_KM = 1492.7
"""GeoGuessr-style score decay (5000 points at 0 km), as used by OSV-5M and PIGEON."""


def accuracy_at(errors_km: ArrayLike, thresholds_km: ArrayLike = THRESHOLDS_KM) -> np.ndarray:
    """Share of errors ``<=`` each threshold (one value per threshold).

    >>> accuracy_at([0.5, 30.0, 3000.0], [1, 25, 2500]).tolist()
    [0.3333333333333333, 0.3333333333333333, 0.6666666666666666]
    """
    err = _errors(errors_km)
    thr = np.asarray(thresholds_km, dtype=np.float64)
    return (err[:, None] <= thr[None, :]).mean(axis=0)


def geoscore(errors_km: ArrayLike) -> float:
    """Mean GeoScore ``5000 * exp(-d / 1492.7)``.

    >>> geoscore([0.0])
    5000.0
    """
    return float(np.mean(5000.0 * np.exp(-_errors(errors_km) / GEOSCORE_SCALE_KM)))


def bootstrap_accuracy_ci(
    errors_km: ArrayLike,
    thresholds_km: ArrayLike = THRESHOLDS_KM,
    *,
    blocks: ArrayLike | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> np.ndarray:
    """Percentile bootstrap interval of each accuracy: array (n_thresholds, 2).

    ``blocks`` (see :func:`geomtl_core.geo.stats.spatial_blocks`) resamples whole spatial blocks, as every
    interval in the book does; without them each image is its own block (a file with no locations).
    """
    from geomtl_core.geo.stats import block_bootstrap, hits, percentile_ci

    err = _errors(errors_km)
    reps = block_bootstrap(hits(err, thresholds_km), blocks, n_boot=n_boot, seed=seed)
    return percentile_ci(reps, level)


@dataclass(frozen=True)
class GeoSummary:
    """All headline numbers of one evaluation."""

    n: int
    accuracy: dict[int, float]
    median_km: float
    mean_km: float
    geoscore: float
    ci: dict[int, tuple[float, float]] | None = None

    def to_json_dict(self) -> dict[str, float | int]:
        """The flat JSON object printed by ``geomtl score --json``."""
        out: dict[str, float | int] = {"n": self.n}
        for t, a in self.accuracy.items():
            out[f"acc_{t}km"] = a
        out.update(median_km=self.median_km, mean_km=self.mean_km, geoscore=self.geoscore)
        if self.ci is not None:
            for t, (lo, hi) in self.ci.items():
                out[f"acc_{t}km_ci95"] = [lo, hi]  # type: ignore[assignment]
        return out

    def to_table(self) -> str:
        """A plain-text accuracy table for terminals and logs."""
        lines = [f"images: {self.n}", f"{'threshold':>10}  {'accuracy':>8}" + ("  95% CI" if self.ci else "")]
        for t, a in self.accuracy.items():
            ci = f"  [{self.ci[t][0]:.3f}, {self.ci[t][1]:.3f}]" if self.ci else ""
            lines.append(f"{t:>7} km  {a:8.4f}{ci}")
        lines += [
            f"median error: {self.median_km:.1f} km",
            f"mean error:   {self.mean_km:.1f} km",
            f"GeoScore:     {self.geoscore:.1f}",
        ]
        return "\n".join(lines)


def summarize_errors(
    errors_km: ArrayLike, *, thresholds_km: ArrayLike = THRESHOLDS_KM, with_ci: bool = False, seed: int = 0,
    blocks: ArrayLike | None = None,
) -> GeoSummary:
    """Accuracies, median/mean error and GeoScore (plus bootstrap CIs on request, over ``blocks`` if given)."""
    err = _errors(errors_km)
    thr = [int(t) for t in thresholds_km]
    acc = accuracy_at(err, thr)
    ci = None
    if with_ci:
        bounds = bootstrap_accuracy_ci(err, thr, blocks=blocks, seed=seed)
        ci = {t: (float(lo), float(hi)) for t, (lo, hi) in zip(thr, bounds, strict=True)}
    return GeoSummary(
        n=len(err),
        accuracy={t: float(a) for t, a in zip(thr, acc, strict=True)},
        median_km=float(np.median(err)),
        mean_km=float(np.mean(err)),
        geoscore=geoscore(err),
        ci=ci,
    )


def summarize_predictions(
    true_lat: ArrayLike,
    true_lon: ArrayLike,
    pred_lat: ArrayLike,
    pred_lon: ArrayLike,
    *,
    labels: ArrayLike | None = None,
    with_ci: bool = False,
) -> GeoSummary:
    """Validate both coordinate sets (naming bad rows) and summarise the errors."""
    tl, tn = validate_coordinates(true_lat, true_lon, what="true coordinates", labels=labels)
    pl, pn = validate_coordinates(pred_lat, pred_lon, what="predicted coordinates", labels=labels)
    return summarize_errors(haversine_km(tl, tn, pl, pn, validate=False), with_ci=with_ci)


def _errors(errors_km: ArrayLike) -> np.ndarray:
    err = np.asarray(errors_km, dtype=np.float64).ravel()
    if err.size == 0:
        raise InputError("no errors to summarise: the prediction set is empty")
    if not np.all(np.isfinite(err)) or np.any(err < 0):
        raise ValueError("errors must be finite, non-negative distances in km")
    return err
