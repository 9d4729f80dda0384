"""Build the three default partitionings from 4.7M MP-16-like points and assign them;
compare S2 id speed with an s2sphere per-point loop on a subsample (scaled).

MP-16-like points are resampled from the published cells' means and counts when
../shared/reference is present, else from a clustered synthetic distribution.
Goals (issue 3): >= 50x faster than s2sphere; build + assign < 60 s; peak memory < 4 GB.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

from geomtl_core.geo import s2
from geomtl_core.geo.partitioning import build_partitionings, read_cells_csv

import numpy as np

N = 4_723_695
SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference" / "geoestimation" / "geo-cells"


def mp16_like_points(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points drawn from the published fine cells (count-weighted) with ~5 km jitter."""
    rng = np.random.default_rng(seed)
    fine = read_cells_csv(SHARED / "cells_50_1000.csv")
    cls = rng.choice(len(fine), size=n, p=fine.counts / fine.counts.sum())
    lat = np.clip(fine.lat_mean[cls] + rng.normal(0, 0.05, n), -90, 90)
    lon = (fine.lon_mean[cls] + rng.normal(0, 0.05, n) + 180) % 360 - 180
    return lat, lon


def main() -> int:
    import s2sphere

    lat, lon = mp16_like_points(N)
    sub = 100_000
    t = time.perf_counter()
    for a, b in zip(lat[:sub].tolist(), lon[:sub].tolist(), strict=True):
        s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(a, b))
    ref_rate = sub / (time.perf_counter() - t)
    t = time.perf_counter()
    s2.cell_ids(lat, lon)
    our_rate = N / (time.perf_counter() - t)

    t0 = time.perf_counter()
    parts = build_partitionings(lat, lon, tau_max=(5000, 2000, 1000), tau_min=50)
    t_build = time.perf_counter() - t0
    t1 = time.perf_counter()
    assigned = [int((p.assign(lat, lon) >= 0).sum()) for p in parts]
    t_assign = time.perf_counter() - t1
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2

    print(f"points: {N:,} (MP-16-like)")
    print(f"S2 leaf ids: geomtl {our_rate / 1e6:.2f} M points/s, s2sphere {ref_rate / 1e3:.0f} k points/s "
          f"(on {sub:,}) -> ratio {our_rate / ref_rate:.0f}x (goal >= 50x)")
    print(f"s2sphere for all {N:,} points would take {N / ref_rate:.0f} s")
    print(f"build 3 partitionings: {t_build:.1f} s -> classes {[len(p) for p in parts]} (published 3298/7202/12893)")
    print(f"assign all points to 3 partitionings: {t_assign:.1f} s, assigned {assigned}")
    print(f"build + assign: {t_build + t_assign:.1f} s (goal < 60 s); peak RSS {peak_gb:.2f} GB (goal < 4 GB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
