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


def seed_errors(files: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(S, n) errors (km) of S per-seed prediction files on the same images, aligned by id to the first
    file, with the first file's true latitude, longitude and image ids."""
    first = read_predictions(files[0])
    out = [first.errors_km]
    for f in files[1:]:
        _, other = align_predictions(first, read_predictions(f), str(files[0]), str(f))
        out.append(other.errors_km)
    return np.stack(out), first.true_lat, first.true_lon, list(first.img_id.astype(str))


def seed_hits(files: list[Path], thresholds_km=THRESHOLDS_KM, block_deg: float = BLOCK_DEG
              ) -> tuple[np.ndarray, np.ndarray]:
    """(S, n, T) hits of S per-seed prediction files on the same images (aligned by id to the first file)
    and the spatial block of each image's true location."""
    err, lat, lon, _ = seed_errors(files)
    return np.stack([hits(e, thresholds_km) for e in err]), spatial_blocks(lat, lon, block_deg)


def seed_summary(files: list[Path], n_boot: int = N_BOOT_SUMMARY) -> dict:
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


def compare_files(files_a: list[Path], files_b: list[Path], n_boot: int = N_BOOT, seed: int = 0,
                  block_deg: float = BLOCK_DEG) -> PairedComparison:
    """A − B from per-seed prediction files (any layout :func:`geomtl_core.data.predictions.read_predictions`
    reads, e.g. GeoEstimation's published ones), paired by seed and image id; unequal seed counts are refused."""
    if len(files_a) != len(files_b):
        raise ValueError(f"A has {len(files_a)} seeds and B {len(files_b)}: a paired comparison needs the same "
                         "seeds on both sides; rerun the missing seeds")
    ea, lat, lon, _ = seed_errors(files_a)
    eb, *_ = seed_errors([files_a[0], *files_b])
    return paired_comparison(ea, eb[1:], lat, lon, THRESHOLDS_KM, block_deg=block_deg, n_boot=n_boot, seed=seed)
