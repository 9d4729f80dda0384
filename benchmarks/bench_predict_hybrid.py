"""What the retrieval gallery costs ``geomtl predict``: per-image time of the whole pipeline (read + decode +
model + geolocate + reverse geocoding) with the hybrid predictor (one backbone pass gives the embeddings and the
classifier's logits, then :func:`~geomtl_core.geo.retrieval.hybrid_locate` in the classifier's top cells) against
the classifier alone (``--no-retrieval``), side by side in one run on the same bundle and images, as a ratio.

Bundle: ``--bundle PATH`` (e.g. ``models/default``, published with its gallery), else a tiny frozen-feature run
trained here on the synthetic toy data, through ``hybrid_for_run`` and ``save_gallery``. ``--gallery N`` replaces
the gallery (in a copy of the bundle) by N random unit embeddings of its dimension over its fine cells, to see the
search at a real gallery's size (the default scale's: about 67,000 images); its answers mean nothing then.
Images: JPEGs of ~320x240 px cut from the landmark photos in ../shared (as bench_predict.py). Interleaved rounds,
best of each; state the CPU with the numbers (printed first).
Run: .venv/bin/python benchmarks/bench_predict_hybrid.py [--bundle models/default] [--gallery 67000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import geomtl_core  # noqa: F401 - sets KERAS_BACKEND=torch
from geomtl_core.geo.retrieval import Gallery
from geomtl_core.inference.predict import GALLERY_FILE, HYBRID_FILE, Predictor
from geomtl_core.models.bundle import load_bundle

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_pipeline import make_jpegs
from bench_retrieval import cpu_name

ROOT = Path(__file__).resolve().parents[1]


def tiny_hybrid_bundle(tmp: Path, image_size: int) -> Path:
    """A 1-epoch frozen-feature run on the toy data (with a test split), its hybrid chosen and gallery saved."""
    sys.path.insert(0, str(ROOT / "tests"))
    from geomtl_core.inference.hybrid import hybrid_for_run, save_gallery

    from toydata import make_toy_dataset, train_tiny_bundle

    data = make_toy_dataset(tmp / "toy", n_train=600, n_val=120, size=image_size)
    other = make_toy_dataset(tmp / "other", n_train=7, n_val=120, size=image_size)
    shutil.copytree(other / "val", data / "test")
    shutil.copy(other / "val.csv", data / "test.csv")
    run = train_tiny_bundle(data, tmp / "run", data_cache=tmp / "cache", model={"freeze_backbone": True},
                            data={"image_size": image_size})
    hybrid_for_run(run)
    save_gallery(run)
    return run


def synthetic_gallery(folder: Path, n: int, seed: int = 0) -> None:
    """Replace the bundle's gallery by ``n`` random unit embeddings of its dimension, spread over its cells."""
    real = Gallery.from_npz(folder / GALLERY_FILE)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(real), n)  # locations and cells of real gallery images, so cells stay consistent
    emb = rng.normal(size=(n, real.dim)).astype(np.float32)
    Gallery.build(emb, real.lat[rows], real.lon[rows], real.cell[rows], n_cells=real.n_cells).to_npz(
        folder / GALLERY_FILE)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", help="bundle folder with gallery.npz and hybrid.json (default: a tiny one, here)")
    ap.add_argument("--gallery", type=int, help="replace the gallery by this many random embeddings (in a copy)")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--image-size", type=int, default=64, help="input size of the tiny bundle trained here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        path = Path(args.bundle) if args.bundle else tiny_hybrid_bundle(tmp, args.image_size)
        if not (path / GALLERY_FILE).is_file() or not (path / HYBRID_FILE).is_file():
            raise SystemExit(f"{path} has no {GALLERY_FILE} with {HYBRID_FILE}: publish it with its gallery first")
        if args.gallery:
            copy = tmp / "bundle"
            shutil.copytree(path, copy, ignore=shutil.ignore_patterns("checkpoints", "eval-*", "predictions_*"))
            synthetic_gallery(copy, args.gallery)
            path = copy
        bundle = load_bundle(path)
        folder = tmp / "images"
        folder.mkdir()
        for k, data in enumerate(make_jpegs(args.images)):
            (folder / f"{k:05d}.jpg").write_bytes(data)
        files = sorted(folder.iterdir())
        preds = {"hybrid": Predictor(bundle, batch_size=args.batch_size),
                 "classifier": Predictor(bundle, batch_size=args.batch_size, retrieval=False)}
        gallery = preds["hybrid"].retrieval.gallery
        for p in preds.values():  # warm-up (the faiss index is built on the first search)
            list(p.run(files[: args.batch_size]))
        folder_ms = {m: [] for m in preds}
        single_ms = {m: [] for m in preds}
        for _ in range(args.rounds):  # interleaved rounds, best of each: robust to other load on the machine
            for m, p in preds.items():
                t = time.perf_counter()
                n = sum(1 for r in p.run(files) if r["error"] is None)
                folder_ms[m].append(1000 * (time.perf_counter() - t) / n)
                for f in files[:20]:
                    t = time.perf_counter()
                    list(p.run([f]))
                    single_ms[m].append(1000 * (time.perf_counter() - t))

    print(f"CPU: {cpu_name()} ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})")
    what = args.bundle or f"tiny frozen {bundle.config.model.backbone} (trained here)"
    print(f"bundle: {what}; input {preds['hybrid'].size}px; gallery {len(gallery)} x {gallery.dim}"
          f"{' (synthetic)' if args.gallery else ''}; settings {preds['hybrid'].retrieval.settings}; "
          f"{len(files)} JPEGs ~320x240, batch {args.batch_size}")
    print(f"{'':12s} {'folder ms/image':>16s} {'single-image ms':>16s}")
    for m in preds:
        print(f"{m:12s} {min(folder_ms[m]):16.2f} {statistics.median(single_ms[m]):16.1f}")
    print(f"hybrid / classifier time ratio: folder {min(folder_ms['hybrid']) / min(folder_ms['classifier']):.2f}, "
          f"single image {statistics.median(single_ms['hybrid']) / statistics.median(single_ms['classifier']):.2f}"
          f" (best of {args.rounds} rounds; single: median of {len(single_ms['hybrid'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
