"""Statistics of per-seed prediction files: hits of S seeds on the same images, a run's accuracy interval over
seeds and blocks, and the paired comparison of two runs (A − B, :func:`geomtl_core.geo.stats.paired_comparison`,
the one comparison of the project)."""

from __future__ import annotations

from pathlib import Path

from geomtl_core.data.predictions import align_predictions, read_predictions
from geomtl_core.geo.protocol import BLOCK_DEG, N_BOOT, N_BOOT_SUMMARY, THRESHOLDS_KM
from geomtl_core.geo.stats import (
    PairedComparison,
    block_bootstrap,
    hierarchical_bootstrap,
    hits,
    paired_comparison,
    percentile_ci,
    spatial_blocks,
)

import numpy as np

SeedFiles = Path | list[Path]
"""One seed's prediction file, or its files on the cross-validation folds (one per fold, the same folds for
every seed and run)."""


def pooled_errors(files: list[SeedFiles]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], np.ndarray]:
    """(S, n) errors (km) of S seeds on the same images, each fold aligned by id to the first seed's file of
    that fold and the folds concatenated, with the true latitude, longitude, image ids and fold of each image."""
    per_seed = [[f] if isinstance(f, str | Path) else list(f) for f in files]
    n_folds = {len(f) for f in per_seed}
    if len(n_folds) != 1:
        raise ValueError(f"seeds with different numbers of folds {sorted(n_folds)}; rerun the missing folds")
    err, lat, lon, ids, fold = [], [], [], [], []
    for k in range(n_folds.pop()):
        first = read_predictions(per_seed[0][k])
        rows = [first.errors_km]
        for seed_files in per_seed[1:]:
            _, other = align_predictions(first, read_predictions(seed_files[k]), str(per_seed[0][k]),
                                         str(seed_files[k]))
            rows.append(other.errors_km)
        err.append(np.stack(rows))
        lat.append(first.true_lat)
        lon.append(first.true_lon)
        ids += list(first.img_id.astype(str))
        fold.append(np.full(len(first.true_lat), k))
    return np.concatenate(err, axis=1), np.concatenate(lat), np.concatenate(lon), ids, np.concatenate(fold)


def seed_errors(files: list[SeedFiles]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(S, n) errors (km) of S per-seed prediction files on the same images (folds pooled,
    :func:`pooled_errors`), aligned by id to the first seed, with its true latitude, longitude and image ids."""
    return pooled_errors(files)[:4]


def seed_hits(files: list[SeedFiles], thresholds_km=THRESHOLDS_KM, block_deg: float = BLOCK_DEG
              ) -> tuple[np.ndarray, np.ndarray]:
    """(S, n, T) hits of S per-seed prediction files on the same images (aligned by id to the first seed; folds
    pooled) and the spatial block of each image's true location (nested in its fold)."""
    err, lat, lon, _, fold = pooled_errors(files)
    return np.stack([hits(e, thresholds_km) for e in err]), spatial_blocks(lat, lon, block_deg, fold)


def seed_summary(files: list[SeedFiles], n_boot: int = N_BOOT_SUMMARY) -> dict:
    """Accuracy per threshold across seeds: mean, sd (ddof 1) and a 95% CI resampling seeds, then blocks of
    the test locations (:func:`geomtl_core.geo.stats.hierarchical_bootstrap`)."""
    h, blocks = seed_hits(files)
    per_seed = h.mean(axis=1)  # (S, T)
    reps = hierarchical_bootstrap(h, blocks, n_boot=n_boot) if len(files) > 1 else \
        block_bootstrap(h[0], blocks, n_boot=n_boot)
    ci = percentile_ci(reps)
    sd = per_seed.std(axis=0, ddof=1) if len(files) > 1 else np.zeros(len(THRESHOLDS_KM))
    return {"n_seeds": len(files), "n_blocks": int(blocks.max()) + 1, "n": int(h.shape[1]),
            **{f"acc_{t}km": {"mean": float(per_seed[:, k].mean()), "sd": float(sd[k]),
                              "ci95": [float(ci[k, 0]), float(ci[k, 1])]} for k, t in enumerate(THRESHOLDS_KM)}}


def compare_files(files_a: list[SeedFiles], files_b: list[SeedFiles], n_boot: int = N_BOOT, seed: int = 0,
                  block_deg: float = BLOCK_DEG) -> PairedComparison:
    """A − B from per-seed prediction files (any layout :func:`geomtl_core.data.predictions.read_predictions`
    reads, e.g. GeoEstimation's published ones), paired by seed, fold and image id; unequal seed counts are
    refused. With per-fold files the folds are pooled and the blocks nest in folds."""
    if len(files_a) != len(files_b):
        raise ValueError(f"A has {len(files_a)} seeds and B {len(files_b)}: a paired comparison needs the same "
                         "seeds on both sides; rerun the missing seeds")
    ea, lat, lon, _, fold = pooled_errors(files_a)
    eb = pooled_errors([files_a[0], *files_b])[0]  # B aligned to A's images
    return paired_comparison(ea, eb[1:], lat, lon, THRESHOLDS_KM, block_deg=block_deg, n_boot=n_boot, seed=seed,
                             groups=fold)

