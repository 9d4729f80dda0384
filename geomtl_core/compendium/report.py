"""Tables and statements for the notebooks: samples, partitionings against tau, baselines, and
paired comparisons of two runs on the same test images (bootstrap CI of the difference)."""

from __future__ import annotations

from pathlib import Path

from geomtl_core.data.images import decode_image
from geomtl_core.data.metadata import read_metadata
from geomtl_core.data.predictions import read_predictions
from geomtl_core.data.shards import open_source
from geomtl_core.geo.baselines import nearest_cell_oracle, prior_baseline, random_baseline, true_cell_oracle
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
    """Prior, random and both oracles' accuracies (%) at the five thresholds for each partitioning."""
    rows = []
    for p in parts:
        for name, fn in (("prior", prior_baseline), ("random", random_baseline), ("true-cell oracle", true_cell_oracle),
                         ("nearest-cell-mean oracle", nearest_cell_oracle)):
            s = fn(p, lat, lon)
            rows.append({"partitioning": p.name, "classes": len(p), "baseline": name,
                         **{f"{t} km": round(100 * s.accuracy[t], 2) for t in THRESHOLDS_KM},
                         "median km": round(s.median_km, 0)})
    return pd.DataFrame(rows).set_index(["partitioning", "baseline"])


PRIMARY_KM = 200
"""The primary endpoint: accuracy within 200 km (declared in book/method.md, with the reasons)."""


def seed_hits(files: list[Path], thresholds_km=THRESHOLDS_KM, block_deg: float = 5.0
              ) -> tuple[np.ndarray, np.ndarray]:
    """(S, n, T) hits of S per-seed prediction files on the same images (aligned by id to the first file)
    and the 5-degree block of each image's true location."""
    from geomtl_core.data.predictions import align_predictions
    from geomtl_core.geo.stats import hits, spatial_blocks

    first = read_predictions(files[0])
    out = [hits(first.errors_km, thresholds_km)]
    for f in files[1:]:
        _, other = align_predictions(first, read_predictions(f), str(files[0]), str(f))
        out.append(hits(other.errors_km, thresholds_km))
    return np.stack(out), spatial_blocks(first.true_lat, first.true_lon, block_deg)


def compare_runs(scale: str, a: str, b: str, root: Path | None = None, n_boot: int = 2000, seed: int = 0,
                 method_a: str | None = None, method_b: str | None = None) -> pd.DataFrame:
    """B minus A (percentage points) at each threshold over all their seeds, paired on the same images and
    seeds: a 95% CI resampling seeds, then spatial blocks; two-sided p; Holm over the thresholds.

    ``method_a``/``method_b`` pick a per-method prediction file (e.g. ``hierarchy`` against a head's
    partitioning within one model).
    """
    from geomtl_core.compendium.experiments import seed_predictions

    fa, fb = seed_predictions(scale, a, root, method_a), seed_predictions(scale, b, root, method_b)
    return compare_files(fa, fb, n_boot=n_boot, seed=seed)


def compare_files(fa: list[Path], fb: list[Path], n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """B minus A as in :func:`compare_runs`, from per-seed prediction files (any layout
    :func:`geomtl_core.data.predictions.read_predictions` reads, e.g. GeoEstimation's published ones)."""
    from geomtl_core.geo.stats import block_bootstrap, bootstrap_p, hierarchical_bootstrap, holm, percentile_ci

    n_seeds = min(len(fa), len(fb))
    ha, blocks = seed_hits(fa[:n_seeds])
    hb, _ = seed_hits([fa[0], *fb[:n_seeds]])
    diff = hb[1:] - ha  # (S, n, T), paired by seed and image
    reps = hierarchical_bootstrap(diff, blocks, n_boot=n_boot, seed=seed) if n_seeds > 1 else \
        block_bootstrap(diff[0], blocks, n_boot=n_boot, seed=seed)
    ci, p = percentile_ci(reps), bootstrap_p(reps)
    est = diff.mean(axis=(0, 1))
    return pd.DataFrame({"threshold": [f"{t} km" for t in THRESHOLDS_KM], "difference (points)": 100 * est,
                         "ci95 low": 100 * ci[:, 0], "ci95 high": 100 * ci[:, 1], "p": p, "p_holm": holm(p),
                         "significant": (ci[:, 0] > 0) | (ci[:, 1] < 0), "n_seeds": n_seeds,
                         "n_blocks": int(blocks.max()) + 1}).set_index("threshold").round(3)


def verdict_table(scale: str, comparisons: list[tuple[str, str, str]], root: Path | None = None,
                  endpoint_km: int = PRIMARY_KM, n_boot: int = 2000) -> pd.DataFrame:
    """One row per comparison ``(label, a, b)`` on the primary endpoint: B − A with its seeds-then-blocks
    95% CI and p, Holm-adjusted over the family of rows; a verdict word per row, "not resolved" when the
    interval includes 0. Comparisons whose runs are missing are left out."""
    from geomtl_core.compendium.experiments import load_results
    from geomtl_core.geo.stats import holm

    results = load_results(scale, root)
    rows = []
    for label, a, b in comparisons:
        if a not in results or b not in results:
            continue
        d = compare_runs(scale, a, b, root, n_boot=n_boot).loc[f"{endpoint_km} km"]
        acc = {n: 100 * (results[n].get("seed_summary") or {}).get(f"acc_{endpoint_km}km", {}).get(
            "mean", results[n]["test"]["methods"][results[n]["test"]["best"]][f"acc_{endpoint_km}km"]) for n in (a, b)}
        rows.append({"comparison": label, "a": a, "b": b, "a %": round(acc[a], 2), "b %": round(acc[b], 2),
                     "b − a (points)": d["difference (points)"], "ci95 low": d["ci95 low"],
                     "ci95 high": d["ci95 high"], "p": float(d["p"]), "n_seeds": int(d["n_seeds"]),
                     "n_blocks": int(d["n_blocks"])})
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows)
    table["p_holm"] = holm(table["p"].to_numpy()).round(4)
    table["verdict"] = np.where(table["ci95 low"] > 0, "b better", np.where(table["ci95 high"] < 0, "b worse",
                                                                             "not resolved"))
    table.loc[(table["verdict"] != "not resolved") & (table["p_holm"] >= 0.05), "verdict"] += \
        " (not after Holm)"
    return table.set_index("comparison")


def describe_difference(table: pd.DataFrame, a: str, b: str, primary_km: int = PRIMARY_KM) -> str:
    """Plain sentences for the book from a comparison table: the primary endpoint first (better, worse or
    not resolved, with its interval), then the secondary thresholds."""
    def verdict(r: pd.Series) -> str:
        return "better" if r["ci95 low"] > 0 else "worse" if r["ci95 high"] < 0 else "not resolved"

    key = f"{primary_km} km"
    seeds = f"{int(table['n_seeds'].iloc[0])} seeds, " if "n_seeds" in table else ""
    blocks = f"{int(table['n_blocks'].iloc[0])} blocks" if "n_blocks" in table else "5° blocks"
    out = []
    if key in table.index:
        r = table.loc[key]
        word = {"better": f"{b} is better than {a}", "worse": f"{b} is worse than {a}",
                "not resolved": f"not resolved ({b} − {a} could be either sign)"}[verdict(r)]
        out.append(f"Primary endpoint ({key}): {b} − {a} = {r['difference (points)']:+.2f} points, 95% CI "
                   f"[{r['ci95 low']:+.2f}, {r['ci95 high']:+.2f}] ({seeds}{blocks}): {word}.")
    rest = {v: [t for t, r in table.iterrows() if t != key and verdict(r) == v] for v in
            ("better", "worse", "not resolved")}
    parts = [f"{b} better at {', '.join(rest['better'])}"] if rest["better"] else []
    parts += [f"{b} worse at {', '.join(rest['worse'])}"] if rest["worse"] else []
    parts += [f"not resolved at {', '.join(rest['not resolved'])}"] if rest["not resolved"] else []
    if parts:
        out.append("Secondary thresholds: " + "; ".join(parts) + ".")
    return " ".join(out)


def calibration_statement(result: dict, baselines: pd.DataFrame, partitioning: str) -> str:
    """Is the task calibrated? The model against the prior (floor) and the nearest-cell-mean oracle (the
    ceiling of a classifier over these cells) per threshold."""
    m = result["test"]["methods"][result["test"]["best"]]
    lines = ["| threshold | prior % | model % | ceiling % | model share of the prior-to-ceiling gap |",
             "|---|---|---|---|---|"]
    for t in THRESHOLDS_KM:
        prior = baselines.loc[(partitioning, "prior"), f"{t} km"]
        oracle = baselines.loc[(partitioning, "nearest-cell-mean oracle"), f"{t} km"]
        model = 100 * m[f"acc_{t}km"]
        gap = (model - prior) / (oracle - prior) if oracle > prior else float("nan")
        lines.append(f"| {t} km | {prior:.1f} | {model:.1f} | {oracle:.1f} | {gap:.2f} |")
    return "\n".join(lines)


def split_table(meta: pd.DataFrame, block_deg: float = 5.0) -> pd.DataFrame:
    """How each split is spread and how far it is from training: images, 5-degree blocks, the largest
    block's share, and the distance from each image to its nearest training location (km)."""
    from geomtl_core.data.spatial_split import nearest_train_km
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


def within_model_table(scale: str, run: str, reference: str = "hierarchy", root: Path | None = None,
                       endpoint_km: int = PRIMARY_KM, n_boot: int = 2000) -> pd.DataFrame:
    """Every prediction method of one run (each head alone, f*, the remedies) against ``reference`` on the
    same images and seeds: mean accuracy and the paired difference with its seeds-then-blocks 95% CI."""
    import json

    from geomtl_core.compendium.experiments import find_root, seed_predictions

    root = find_root() if root is None else Path(root)
    methods = json.loads((root / "results" / scale / f"{run}.json").read_text())["test"]["methods"]
    key = f"{endpoint_km} km"
    rows = []
    for m in methods:
        hits, _ = seed_hits(seed_predictions(scale, run, root, m))
        row = {"method": m, f"acc {key} %": round(100 * float(hits[..., THRESHOLDS_KM.index(endpoint_km)].mean()), 2)}
        if m != reference:
            d = compare_runs(scale, run, run, root, n_boot=n_boot, method_a=reference, method_b=m).loc[key]
            row |= {f"− {reference} (points)": d["difference (points)"], "ci95 low": d["ci95 low"],
                    "ci95 high": d["ci95 high"], "verdict": "better" if d["ci95 low"] > 0 else
                    "worse" if d["ci95 high"] < 0 else "not resolved"}
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")
