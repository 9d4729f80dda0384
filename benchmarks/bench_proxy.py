"""Proxy dataset throughput: cut + JPEG-encode crops at real MP-16 locations in batches of 256 (one
process), and the projected time of the default export (100,000 samples, 64 px, 300 km).

Goal (issue 5): the default export in under 5 minutes on a 2-core laptop CPU.
"""

from __future__ import annotations

import time

from geomtl_core.data.proxy.export import ProxyConfig, load_locations
from geomtl_core.data.proxy.labels import labels_at
from geomtl_core.data.proxy.world import cut, load_world

import simplejpeg

N = 10_240


def main() -> None:
    cfg = ProxyConfig()
    t0 = time.perf_counter()
    world = load_world()
    locs = load_locations()
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    labels_at(locs["lat"], locs["lon"])
    t_labels = time.perf_counter() - t0
    lat, lon = locs["lat"].to_numpy()[:N], locs["lon"].to_numpy()[:N]
    t_cut = t_enc = 0.0
    for start in range(0, N, cfg.batch):
        t0 = time.perf_counter()
        crops = cut(world, lat[start:start + cfg.batch], lon[start:start + cfg.batch], cfg.fov_km, cfg.size)
        t1 = time.perf_counter()
        for c in crops:
            simplejpeg.encode_jpeg(c, quality=cfg.quality)
        t_cut, t_enc = t_cut + t1 - t0, t_enc + time.perf_counter() - t1
    rate = N / (t_cut + t_enc)
    projected = t_load + t_labels + len(locs) / rate
    print(f"crops {cfg.size}px/{cfg.fov_km:g}km: cut {N / t_cut:,.0f}/s, encode {N / t_enc:,.0f}/s, "
          f"together {rate:,.0f} samples/s")
    print(f"labels for {len(locs):,} locations: {t_labels:.1f} s; world image + locations: {t_load:.1f} s")
    print(f"projected default export ({len(locs):,} samples): {projected:.0f} s (goal < 300 s)")


if __name__ == "__main__":
    main()
