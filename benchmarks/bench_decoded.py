"""Training batches from decoded images (``data.decode_once``) against the per-sample pipeline, side by side.

What the small CNN's runs read: 64 px JPEG squares (the proxy's), batch 512, crops of 66-100% of the area and
colour jitter 0.2, at the 32 and 64 px inputs. Per-sample: read + decode + crop + jitter in 2 DataLoader workers
(the default scale's ``data.workers``). Decoded: every image decoded once (its cost printed on its own and
amortised over ``--epochs``), then whole batches cropped and jittered in this process. Reports images/s of one
epoch and the ratio decoded / per-sample.

Run: ``python benchmarks/bench_decoded.py [--n 20000] [--epochs 1]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from geomtl_core.data.dataset import GeoImageDataset, build_labels, make_loader
from geomtl_core.data.decoded import DecodedTrainSet, decode_all
from geomtl_core.data.images import TransformConfig
from geomtl_core.data.metadata import read_metadata
from geomtl_core.data.shards import index_shards, write_shards
from geomtl_core.geo.partitioning import build_partitionings
from geomtl_core.training.malloc import keep_freed_memory

import numpy as np
import pandas as pd
import simplejpeg

BATCH = 512


def _jpegs(n: int, rng: np.random.Generator) -> list[bytes]:
    """``n`` 64 px squares of smooth noise (the proxy's size and JPEG quality class)."""
    base = rng.normal(128, 40, (n // 100 + 1, 16, 16, 3))
    out = []
    for k in range(n):
        img = np.kron(base[k // 100], np.ones((4, 4, 1))) + rng.normal(0, 10, (64, 64, 3))
        out.append(simplejpeg.encode_jpeg(np.clip(img, 0, 255).astype(np.uint8), quality=90))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--epochs", type=int, default=1, help="epochs the one decode is amortised over")
    args = p.parse_args(argv)
    keep_freed_memory()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ids = [f"{k:06d}.jpg" for k in range(args.n)]
        write_shards(zip(ids, _jpegs(args.n, rng), strict=True), root / "shards", per_shard=5000)
        pd.DataFrame({"IMG_ID": ids, "LAT": rng.uniform(-60, 70, args.n), "LON": rng.uniform(-180, 180, args.n),
                      "S3_Label": rng.integers(0, 3, args.n)}).to_csv(root / "meta.csv", index=False)
        meta = read_metadata(root / "meta.csv")
        parts = build_partitionings(meta.lat, meta.lon, tau_max=(400, 100), tau_min=1)
        src = index_shards(root / "shards")
        labels = build_labels(src.ids, meta, parts, scene_columns=("s3",))
        for size in (32, 64):
            tfm = TransformConfig(size=size)
            loader = make_loader(GeoImageDataset(src, labels, tfm, train=True), BATCH, shuffle=True, workers=2,
                                 drop_last=True)
            t = time.perf_counter()
            n = sum(len(x) for x, _ in loader)
            per_sample = n / (time.perf_counter() - t)
            t = time.perf_counter()
            images = decode_all(src, labels, size, round(size * tfm.resize_ratio))
            decode_s = time.perf_counter() - t
            ds = DecodedTrainSet(images, labels, tfm, seed=0)
            loader = make_loader(ds, BATCH, shuffle=True, workers=0, drop_last=True)
            t = time.perf_counter()
            n = sum(len(x) for x, _ in loader)
            epoch_s = time.perf_counter() - t
            decoded = n / epoch_s
            amortised = n / (epoch_s + decode_s / args.epochs)
            print(f"{size} px: per-sample (2 workers) {per_sample:,.0f} img/s | decoded {decoded:,.0f} img/s "
                  f"({decoded / per_sample:.2f}x); with the one decode ({decode_s:.1f} s for {len(images):,} "
                  f"images) over {args.epochs} epoch(s) {amortised:,.0f} img/s ({amortised / per_sample:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
