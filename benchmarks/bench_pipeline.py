"""Input pipeline throughput: decode + augment + label batches (2 DataLoader workers) against the
bare decode rate of the same JPEGs (simplejpeg, one process), printed side by side.

Images: 2,000 JPEGs of ~320x240 px (MP-16 shards hold photos resized to a similar size),
cut from the real landmark photos in ../shared when present, else from smooth noise.
Goal (issues 4 and 15): pipeline >= 0.7x bare decode at 64 and 96 px, and above the default model's training rate.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from geomtl_core.data.dataset import GeoImageDataset, build_labels, make_loader
from geomtl_core.data.images import TransformConfig, decode_image
from geomtl_core.data.metadata import read_metadata
from geomtl_core.data.shards import index_shards, write_shards
from geomtl_core.geo.partitioning import build_partitionings
from geomtl_core.training.malloc import keep_freed_memory

import numpy as np
import pandas as pd
import simplejpeg

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "reference" / "photos" / "landmarks"
N = 2000


def make_jpegs(n: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    sources = [decode_image(p.read_bytes()) for p in sorted(PHOTOS.glob("*.jpg"))]
    if not sources:
        sources = [np.clip(rng.normal(128, 40, (300, 400, 3)), 0, 255).astype(np.uint8)]
    out = []
    for k in range(n):
        img = sources[k % len(sources)]
        h, w = img.shape[:2]
        ch, cw = min(h, 240), min(w, 320)
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        out.append(simplejpeg.encode_jpeg(np.ascontiguousarray(img[y : y + ch, x : x + cw]), quality=90))
    return out


def main() -> int:
    keep_freed_memory()  # as training does (its DataLoader workers inherit it)
    jpegs = make_jpegs(N)
    t = time.perf_counter()
    for data in jpegs:
        simplejpeg.decode_jpeg(data, colorspace="RGB")
    bare = N / (time.perf_counter() - t)

    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ids = [f"{k:06d}.jpg" for k in range(N)]
        write_shards(zip(ids, jpegs, strict=True), root / "shards", per_shard=500)
        pd.DataFrame({"IMG_ID": ids, "LAT": rng.uniform(-60, 70, N), "LON": rng.uniform(-180, 180, N),
                      "S3_Label": rng.integers(0, 3, N)}).to_csv(root / "meta.csv", index=False)
        meta = read_metadata(root / "meta.csv")
        parts = build_partitionings(meta.lat, meta.lon, tau_max=(400, 100), tau_min=1)
        src = index_shards(root / "shards")
        labels = build_labels(src.ids, meta, parts, scene_columns=("s3",))
        rates = {}
        for size in (64, 96):
            ds = GeoImageDataset(src, labels, TransformConfig(size=size), train=True)
            loader = make_loader(ds, batch_size=64, shuffle=True, workers=2)
            next(iter(loader))  # warm-up: worker start
            t = time.perf_counter()
            n = sum(len(x) for x, _ in loader)
            rates[size] = n / (time.perf_counter() - t)

    print(f"bare decode (simplejpeg, full size, 1 process): {bare:.0f} img/s")
    for size, r in rates.items():
        print(f"pipeline {size}px (read+decode+RandomResizedCrop+flip+jitter+labels, 2 workers): {r:.0f} img/s "
              f"-> ratio {r / bare:.2f} (goal >= 0.7)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
