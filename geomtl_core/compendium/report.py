"""Tables and statements for the notebooks: samples, partitionings against tau, baselines, and
paired comparisons of two runs on the same test images (bootstrap CI of the difference)."""

from __future__ import annotations

from pathlib import Path

from geomtl_core.data.images import decode_image
from geomtl_core.data.metadata import read_metadata
from geomtl_core.data.predictions import read_predictions
from geomtl_core.data.shards import open_source
from geomtl_core.geo.baselines import oracle_baseline, prior_baseline, random_baseline
from geomtl_core.geo.metrics import THRESHOLDS_KM
from geomtl_core.geo.partitioning import Partitioning, build_partitionings

import numpy as np
import pandas as pd


def load_samples(root: Path, split: str = "test", n: int = 18, seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """``n`` random decoded images of a split with their metadata rows."""
    meta = read_metadata(root / f"{split}.csv")
    src = open_source(root / split)
    pos = pd.Series(np.arange(len(src)), index=src.ids)
    rows = meta.sample(n=min(n, len(meta)), random_state=seed)
    images = np.stack([decode_image(src.read(int(pos[i]))[1]) for i in rows["img_id"]])
    return images, rows


def partition_table(lat: np.ndarray, lon: np.ndarray, tau_min: int, tau_max: list[int]) -> pd.DataFrame:
    """Classes, points kept and cell sizes for each tau_max (same points, same tau_min)."""
    parts = build_partitionings(lat, lon, tau_max, tau_min)
    rows = []
    for t, p in zip(tau_max, parts, strict=True):
        rows.append({"tau_max": t, "classes": len(p), "points_in_cells": p.points_in_cells,
                     "share_kept": round(p.points_in_cells / len(lat), 4), "min_level": int(p.levels.min()),
                     "max_level": int(p.levels.max()), "median_images_per_cell": float(np.median(p.counts))})
    return pd.DataFrame(rows)


def baseline_table(parts: list[Partitioning], lat: np.ndarray, lon: np.ndarray) -> pd.DataFrame:
    """Prior, random and oracle accuracies (%) at the five thresholds for each partitioning."""
    rows = []
    for p in parts:
        for name, fn in (("prior", prior_baseline), ("random", random_baseline), ("oracle", oracle_baseline)):
            s = fn(p, lat, lon)
            rows.append({"partitioning": p.name, "classes": len(p), "baseline": name,
                         **{f"{t} km": round(100 * s.accuracy[t], 2) for t in THRESHOLDS_KM},
                         "median km": round(s.median_km, 0)})
    return pd.DataFrame(rows).set_index(["partitioning", "baseline"])


def paired_difference(pred_a: str | Path, pred_b: str | Path, n_boot: int = 2000, seed: int = 0,
                      block_deg: float = 5.0) -> pd.DataFrame:
    """Accuracy of B minus A (percentage points) at each threshold with a paired 95% CI that resamples
    spatial blocks of the true locations (:mod:`geomtl_core.geo.stats`), and Holm-adjusted p over the thresholds.

    Both files must cover the same images (matched by id); each image's pair stays together.
    """
    from geomtl_core.data.predictions import align_predictions
    from geomtl_core.geo.stats import paired_comparison

    a, b = align_predictions(read_predictions(pred_a), read_predictions(pred_b), str(pred_a), str(pred_b))
    c = paired_comparison(b.errors_km, a.errors_km, b.true_lat, b.true_lon, THRESHOLDS_KM, block_deg=block_deg,
                          n_boot=n_boot, seed=seed)
    return pd.DataFrame({"threshold": [f"{t} km" for t in THRESHOLDS_KM], "difference (points)": 100 * c.diff,
                         "ci95 low": 100 * c.ci[:, 0], "ci95 high": 100 * c.ci[:, 1], "p_holm": c.p_holm,
                         "significant": (c.ci[:, 0] > 0) | (c.ci[:, 1] < 0)}).set_index("threshold").round(3)


def describe_difference(table: pd.DataFrame, a: str, b: str) -> str:
    """A plain sentence for the book: where B beats A, where it loses, where it is a null result."""
    better = [t for t, r in table.iterrows() if r["significant"] and r["difference (points)"] > 0]
    worse = [t for t, r in table.iterrows() if r["significant"] and r["difference (points)"] < 0]
    null = [t for t, r in table.iterrows() if not r["significant"]]
    parts = []
    if better:
        parts.append(f"{b} is better than {a} at {', '.join(better)}")
    if worse:
        parts.append(f"{b} is worse than {a} at {', '.join(worse)}")
    if null:
        parts.append(f"no significant difference (95% paired block-bootstrap CI includes 0) at {', '.join(null)}")
    return "; ".join(parts) + "."


def calibration_statement(result: dict, baselines: pd.DataFrame, partitioning: str) -> str:
    """Is the task calibrated? The model against the prior (floor) and the oracle (ceiling) per threshold."""
    m = result["test"]["methods"][result["test"]["best"]]
    lines = ["| threshold | prior % | model % | oracle % | model share of the prior-to-oracle gap |",
             "|---|---|---|---|---|"]
    for t in THRESHOLDS_KM:
        prior = baselines.loc[(partitioning, "prior"), f"{t} km"]
        oracle = baselines.loc[(partitioning, "oracle"), f"{t} km"]
        model = 100 * m[f"acc_{t}km"]
        gap = (model - prior) / (oracle - prior) if oracle > prior else float("nan")
        lines.append(f"| {t} km | {prior:.1f} | {model:.1f} | {oracle:.1f} | {gap:.2f} |")
    return "\n".join(lines)


def split_table(meta: pd.DataFrame, block_deg: float = 5.0) -> pd.DataFrame:
    """How each split is spread and how far it is from training: images, 5-degree blocks, the largest
    block's share, and the distance from each image to its nearest training location (km)."""
    from geomtl_core.data.proxy.export import nearest_train_km
    from geomtl_core.geo.stats import spatial_blocks

    code = meta["split"].map({"train": 0, "val": 1, "test": 2}).to_numpy()
    lat, lon = meta["lat"].to_numpy(), meta["lon"].to_numpy()
    rows = []
    for name, k in (("val", 1), ("test", 2)):
        counts = np.bincount(spatial_blocks(lat[code == k], lon[code == k], block_deg))
        d = nearest_train_km(lat, lon, code, of=k)
        rows.append({"split": name, "images": int((code == k).sum()), f"{block_deg:g}° blocks": len(counts),
                     "largest block %": round(100 * counts.max() / counts.sum(), 1),
                     **{f"train within {t} km %": round(100 * float((d < t).mean()), 1) for t in (50, 100, 150)},
                     "nearest train km (10th pct)": round(float(np.percentile(d, 10))),
                     "median": round(float(np.median(d))), "90th pct": round(float(np.percentile(d, 90)))})
    return pd.DataFrame(rows).set_index("split")
