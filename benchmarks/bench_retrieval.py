"""Retrieval's search on this CPU, side by side in one run: exact top-k inner-product search of ``--queries``
queries in a gallery of ``--gallery`` unit vectors of ``--dim`` dims (the default scale's training features:
about 67K images, EfficientNet-Lite0's 1280 pooled features) by faiss' ``IndexFlatIP`` against a chunked numpy
product with ``argpartition`` (what scikit-learn's brute-force search does), then the hybrid predictor
(:func:`geomtl_core.geo.retrieval.hybrid_locate`, search inside each query's top cells) per image, and the
gallery's memory as float32 and float16. Best of ``--repeats``; state the CPU with the numbers (they differ
between machines, and on a busy one). Synthetic vectors: the search's cost does not depend on their content.
Run: .venv/bin/python benchmarks/bench_retrieval.py [--gallery 67000] [--queries 2000] [--dim 1280] [--k 10]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

from geomtl_core.geo.retrieval import Gallery, hybrid_locate

import numpy as np


def cpu_name() -> str:
    """The CPU's model name (Linux), else what the platform says."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``repeats`` calls, in seconds (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def numpy_topk(gallery: np.ndarray, q: np.ndarray, k: int, chunk: int = 512) -> np.ndarray:
    """Indices of the ``k`` largest inner products per query, by blocks of queries (exact)."""
    out = []
    for s in range(0, len(q), chunk):
        sims = q[s:s + chunk] @ gallery.T
        out.append(np.argpartition(-sims, k - 1, axis=1)[:, :k])
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gallery", type=int, default=67_000)
    ap.add_argument("--queries", type=int, default=2_000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--cells", type=int, default=2_000, help="fine cells of the hybrid's classifier")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(a.gallery, a.dim)).astype(np.float32)
    lat, lon = rng.uniform(-60, 70, a.gallery), rng.uniform(-180, 180, a.gallery)
    g = Gallery.build(emb, lat, lon, rng.integers(0, a.cells, a.gallery), n_cells=a.cells)
    q = rng.normal(size=(a.queries, a.dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    probs = rng.dirichlet(np.full(a.cells, 0.05), size=a.queries)
    print(f"CPU: {cpu_name()} ({os.cpu_count()} cores); gallery {a.gallery} x {a.dim}, {a.queries} queries, "
          f"k={a.k}")
    t_faiss = best_of(lambda: g.search(q, a.k), a.repeats)
    t_numpy = best_of(lambda: numpy_topk(g.emb, q, a.k), a.repeats)
    t_hybrid = best_of(lambda: hybrid_locate(g, q, probs, top_cells=5, k=a.k, kernel_km=25.0), a.repeats)
    rows = [("faiss IndexFlatIP (global top-k)", t_faiss), ("numpy product + argpartition (global top-k)", t_numpy),
            ("hybrid_locate (top 5 cells, density mode)", t_hybrid)]
    for name, t in rows:
        print(f"{name:46s} {t:8.2f} s  {1e3 * t / a.queries:7.2f} ms/image")
    print(f"faiss / numpy time ratio: {t_faiss / t_numpy:.2f}")
    print(f"gallery memory: float32 {g.emb.nbytes / 2**20:.0f} MiB, float16 {g.emb.nbytes / 2**21:.0f} MiB "
          f"(+ {(g.lat.nbytes + g.lon.nbytes + g.cell.nbytes) / 2**20:.1f} MiB coordinates and cells)")


if __name__ == "__main__":
    main()
