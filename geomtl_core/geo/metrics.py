"""Geolocation metrics as in the literature: accuracy within 1/25/200/750/2500 km,
median and mean error, GeoScore, and bootstrap confidence intervals.

Every interval here is, by default, the one ``geomtl score --ci`` prints: a percentile bootstrap (2000
replicates, seed 0) that resamples whole **spatial blocks** of the true locations (cells of
:data:`~geomtl_core.geo.stats.BLOCK_DEG` degrees, see :func:`~geomtl_core.geo.stats.spatial_blocks`), since
images close together are not independent. An image-level (i.i.d.) bootstrap is used only when asked for
(``block_deg=None`` or ``blocks=None``); it gives narrower intervals on clustered test sets.
"""

from __future__ import annotations

from dataclasses import dataclass

from geomtl_core.errors import InputError
from geomtl_core.geo.geodesy import haversine_km, validate_coordinates
from geomtl_core.geo.protocol import THRESHOLDS_KM
from geomtl_core.geo.stats import BLOCK_DEG, N_BOOT, spatial_blocks

import numpy as np
from numpy.typing import ArrayLike

# THRESHOLDS_KM: street, city, region, country and continent scales (Hays & Efros 2008), defined by the protocol

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


class _Unset:
    """The default of ``blocks``: not given (an error where an interval is asked for)."""

    def __repr__(self) -> str:
        return "<blocks of the true locations: required>"


BLOCKS_REQUIRED = _Unset()


def _check_blocks(blocks, n: int):
    if isinstance(blocks, _Unset):
        raise InputError("an interval needs the spatial blocks of the true locations, as `geomtl score --ci` uses: "
                         "pass blocks=spatial_blocks(true_lat, true_lon) (or use summarize_predictions), or "
                         "blocks=None for an image-level (i.i.d.) bootstrap")
    if blocks is not None and len(np.asarray(blocks)) != n:
        raise InputError(f"blocks has {len(np.asarray(blocks))} entries for {n} errors")
    return blocks


def bootstrap_accuracy_ci(
    errors_km: ArrayLike,
    thresholds_km: ArrayLike = THRESHOLDS_KM,
    *,
    blocks: ArrayLike | _Unset | None = BLOCKS_REQUIRED,
    n_boot: int = N_BOOT,
    level: float = 0.95,
    seed: int = 0,
) -> np.ndarray:
    """Percentile bootstrap interval of each accuracy: array (n_thresholds, 2).

    ``blocks`` (one block id per image, from :func:`geomtl_core.geo.stats.spatial_blocks`) resamples whole
    spatial blocks, as ``geomtl score --ci`` and every interval in the book do; it must be given:
    ``blocks=None`` (explicitly) makes each image its own block (i.i.d. bootstrap).

    >>> err = [0.5, 30.0, 3000.0, 10.0]
    >>> bootstrap_accuracy_ci(err, [25], blocks=[0, 0, 1, 1], n_boot=200).shape
    (1, 2)
    """
    from geomtl_core.geo.stats import block_bootstrap, hits, percentile_ci

    err = _errors(errors_km)
    blocks = _check_blocks(blocks, len(err))
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
    blocks: ArrayLike | _Unset | None = BLOCKS_REQUIRED, n_boot: int = N_BOOT,
) -> GeoSummary:
    """Accuracies, median/mean error and GeoScore of per-image errors (km).

    With ``with_ci=True`` each accuracy gets a 95% percentile bootstrap interval over ``blocks``, the
    spatial block of each image's true location (``spatial_blocks(true_lat, true_lon)``, 5 degrees by
    default): the interval ``geomtl score --ci`` prints. ``blocks=None`` asks for an image-level (i.i.d.)
    bootstrap instead; leaving ``blocks`` out with ``with_ci=True`` is an error, since errors alone do not
    say where the images are. :func:`summarize_predictions` takes coordinates and makes the blocks itself.
    """
    err = _errors(errors_km)
    thr = [int(t) for t in thresholds_km]
    acc = accuracy_at(err, thr)
    ci = None
    if with_ci:
        bounds = bootstrap_accuracy_ci(err, thr, blocks=blocks, seed=seed, n_boot=n_boot)
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
    block_deg: float | None = BLOCK_DEG,
    thresholds_km: ArrayLike = THRESHOLDS_KM,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> GeoSummary:
    """Validate both coordinate sets (naming bad rows, by ``labels`` if given) and summarise the errors.

    ``with_ci=True`` adds 95% intervals from the **spatial block bootstrap** that ``geomtl score --ci`` uses,
    with the same defaults (blocks of ``block_deg`` = 5 degrees of the true locations, 2000 replicates,
    seed 0), so the API and the command line give identical intervals for the same file.
    ``block_deg=None`` resamples single images instead (i.i.d.; narrower where images cluster).

    >>> s = summarize_predictions([48.86, 48.85, 40.7], [2.35, 2.35, -74.0], [48.85, 51.5, 40.7],
    ...                           [2.35, -0.13, -74.0], with_ci=True, n_boot=200)
    >>> s.accuracy[25], s.ci[25][1]
    (0.6666666666666666, 1.0)
    """
    tl, tn = validate_coordinates(true_lat, true_lon, what="true coordinates", labels=labels)
    pl, pn = validate_coordinates(pred_lat, pred_lon, what="predicted coordinates", labels=labels)
    if block_deg is not None and not block_deg > 0:
        raise InputError(f"block_deg must be > 0 degrees (or None for an i.i.d. bootstrap), got {block_deg!r}")
    blocks = spatial_blocks(tl, tn, block_deg) if with_ci and block_deg is not None else None
    return summarize_errors(haversine_km(tl, tn, pl, pn, validate=False), thresholds_km=thresholds_km,
                            with_ci=with_ci, blocks=blocks, n_boot=n_boot, seed=seed)


def _errors(errors_km: ArrayLike) -> np.ndarray:
    err = np.asarray(errors_km, dtype=np.float64).ravel()
    if err.size == 0:
        raise InputError("no errors to summarise: the prediction set is empty")
    if not np.all(np.isfinite(err)) or np.any(err < 0):
        raise ValueError("errors must be finite, non-negative distances in km")
    return err
