"""Prediction speed: single-image latency and folder throughput of ``geomtl predict``'s pipeline
(read + EXIF + decode + resize/crop + model + geolocate + top-k + reverse geocoding), against the
model's raw batch inference rate on random uint8 tensors of the same size, printed as a ratio.

Bundle: ``--bundle PATH``, else ``models/default`` when present, else a tiny bundle trained here
(default config, 1 epoch on the synthetic toy data;
``--backbone``/``--image-size`` choose its model). Images: JPEGs of ~320x240 px cut from the
landmark photos in ../shared (as in bench_pipeline.py), written to a temporary folder.
Goal (issue 8): folder throughput >= 0.8x raw inference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import geomtl_core  # noqa: F401 - sets KERAS_BACKEND=torch
from geomtl_core.inference.predict import Predictor
from geomtl_core.models.bundle import load_bundle

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_pipeline import make_jpegs

ROOT = Path(__file__).resolve().parents[1]


def tiny_bundle(tmp: Path, image_size: int, backbone: str) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from geomtl_core.config import ExperimentConfig
    from geomtl_core.training.trainer import train

    from toydata import make_toy_dataset

    root = make_toy_dataset(tmp / "toy", n_train=128, n_val=32, size=image_size)
    cfg = ExperimentConfig.from_dict({
        "data": {"root": str(root), "image_size": image_size, "workers": 0},
        "partition": {"tau_min": 5, "tau_max": [200, 100, 60]},
        "model": {"backbone": backbone},
        "train": {"epochs": 1, "batch_size": 32},
    })
    train(cfg, tmp / "bundle", verbose=0)
    return tmp / "bundle"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bundle", help="bundle folder (default: models/default, else a tiny one trained here)")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--image-size", type=int, default=64, help="input size of the tiny bundle trained here")
    ap.add_argument("--backbone", default="small_cnn", help="backbone of the tiny bundle trained here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        path = Path(args.bundle) if args.bundle else ROOT / "models" / "default"
        if not args.bundle and not (path / "model.keras").exists():
            path = tiny_bundle(tmp, args.image_size, args.backbone)
        bundle = load_bundle(path)
        folder = tmp / "images"
        folder.mkdir()
        for k, data in enumerate(make_jpegs(args.images)):
            (folder / f"{k:05d}.jpg").write_bytes(data)
        files = sorted(folder.iterdir())
        pred = Predictor(bundle, top_k=5, batch_size=args.batch_size)
        size = pred.size

        x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (args.batch_size, size, size, 3), np.uint8))
        for _ in range(3):
            pred.raw_logits(x)
        list(pred.run(files[: args.batch_size]))
        n_batches = max(4, args.images // args.batch_size)
        raws, thrs, lat = [], [], []
        for _ in range(args.rounds):  # interleaved rounds, best of each: robust to other load on the machine
            # raw model rate: random uint8 batches of the same size, no decoding, no post-processing
            t = time.perf_counter()
            for _ in range(n_batches):
                pred.raw_logits(x)
            raws.append(n_batches * args.batch_size / (time.perf_counter() - t))
            # folder throughput (streamed batches, decoding overlapped with the model)
            t = time.perf_counter()
            n = sum(1 for r in pred.run(files) if r["error"] is None)
            thrs.append(n / (time.perf_counter() - t))
            # single-image latency (whole pipeline, one file per call)
            for f in files[:20]:
                t = time.perf_counter()
                list(pred.run([f]))
                lat.append(time.perf_counter() - t)
        raw, thr = max(raws), max(thrs)

    trained = f"tiny {bundle.config.model.backbone} (trained here)"
    print(f"bundle: {path if args.bundle or path.name == 'default' else trained}; "
          f"input {size}px, batch {args.batch_size}, {len(files)} JPEGs ~320x240, torch threads "
          f"{torch.get_num_threads()}")
    print(f"raw model inference (random uint8 tensors): {raw:.0f} img/s (best of {args.rounds} rounds)")
    print(f"single-image latency (median of {len(lat)}, after warm-up): {1000 * statistics.median(lat):.1f} ms")
    print(f"folder throughput: {thr:.0f} img/s (best of {args.rounds}) -> ratio {thr / raw:.2f} of raw inference "
          "(goal >= 0.8)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
