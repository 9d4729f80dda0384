"""Tables for the notebooks: samples, partitionings against tau, baselines, the splits, results of runs, the
grid, the recipe, the verdict and within-model comparisons (presentation only: nothing cached is computed here)."""

from __future__ import annotations

import json
from pathlib import Path

from geomtl_core.compendium.baselines import baselines
from geomtl_core.compendium.design import cells
from geomtl_core.compendium.project import find_root
from geomtl_core.compendium.results import compare_runs, mean_accuracy, read_result, results_dir, seed_predictions
from geomtl_core.compendium.statistics import seed_hits
from geomtl_core.config import deep_merge
from geomtl_core.data.images import decode_image
from geomtl_core.data.metadata import read_metadata
from geomtl_core.data.shards import open_source
from geomtl_core.data.spatial_split import SPLIT_CODES, nearest_train_km
from geomtl_core.geo.baselines import nearest_cell_oracle, prior_baseline, random_baseline, true_cell_oracle
from geomtl_core.geo.partitioning import Partitioning, build_partitionings
from geomtl_core.geo.protocol import BLOCK_DEG, N_BOOT, PRIMARY_KM, THRESHOLDS_KM, dash, interval_word, plural
from geomtl_core.geo.stats import spatial_blocks

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


def calibration_statement(result: dict, baselines: pd.DataFrame, partitioning: str) -> str:
    """Is the task calibrated? The model against the prior (floor) and the nearest-cell-mean oracle (the
    ceiling of a classifier over these cells) per threshold (a markdown table; "—" where the gap is undefined)."""
    m = result["test"]["methods"][result["test"]["best"]]
    lines = ["| threshold | prior % | model % | ceiling % | model share of the prior-to-ceiling gap |",
             "|---|---|---|---|---|"]
    for t in THRESHOLDS_KM:
        prior = baselines.loc[(partitioning, "prior"), f"{t} km"]
        oracle = baselines.loc[(partitioning, "nearest-cell-mean oracle"), f"{t} km"]
        model = 100 * m[f"acc_{t}km"]
        gap = (model - prior) / (oracle - prior) if oracle > prior else float("nan")
        lines.append(f"| {t} km | {dash(prior, '.1f')} | {model:.1f} | {dash(oracle, '.1f')} | {dash(gap, '.2f')} |")
    return "\n".join(lines)


def split_table(meta: pd.DataFrame, block_deg: float = BLOCK_DEG) -> pd.DataFrame:
    """How each split is spread and how far it is from training: images, spatial blocks, the largest
    block's share, and the distance from each image to its nearest training location (km)."""
    code = meta["split"].map(SPLIT_CODES).to_numpy()
    lat, lon = meta["lat"].to_numpy(), meta["lon"].to_numpy()
    rows = []
    for name, k in (("val", 1), ("test", 2)):
        counts = np.bincount(spatial_blocks(lat[code == k], lon[code == k], block_deg))
        d = nearest_train_km(lat, lon, code, of=k)
        rows.append({"split": name, "images": int((code == k).sum()), f"{block_deg:g}° blocks": len(counts),
                     "largest block %": round(100 * counts.max() / counts.sum(), 1),
                     **{f"train within {t} km %": round(100 * float((d < t).mean()), 1) for t in (100, 200, 750)},
                     "nearest train km (10th pct)": round(float(np.percentile(d, 10))),
                     "median": round(float(np.median(d))), "90th pct": round(float(np.percentile(d, 90)))})
    return pd.DataFrame(rows).set_index("split")


def leakage_table(folds: dict) -> pd.DataFrame:
    """One row per fold of ``folds.json`` (:func:`geomtl_core.data.folds.write_folds`): training images kept and
    dropped by the pixel-disjoint exclusion, the held-out crops' largest overlap with training (source pixels;
    0 by construction), the nearest training location of each test image (km, percentiles), the
    nearest-training-location oracle (the ceiling of a model that answers with a training location) and the
    test set's 5° blocks with Kish's effective number."""
    rows = []
    for j, d in folds["leakage"].items():
        near, oracle = d.get("nearest_train_km", {}), d.get("oracle_nearest_train", {})
        rows.append({"fold": int(j), "train kept": d["train"], "dropped": d["dropped_train"],
                     "kept %": round(100 * d["kept_share"], 1), "test": d["test"],
                     "largest overlap (px)": d.get("max_shared_px_held", "—"),
                     "km to nearest train (5th / 50th / 95th pct)":
                         " / ".join(f"{near[q]:.0f}" for q in ("q05", "q50", "q95")) if near else "—",
                     **{f"oracle {t} km %": round(100 * oracle[str(t)], 1) if oracle else "—" for t in (200, 750)},
                     "test blocks (Kish)": f"{d['test_blocks']} ({d['test_blocks_kish']:.0f})"
                     if "test_blocks" in d else "—"})
    return pd.DataFrame(rows).set_index("fold").sort_index()


def within_model_table(scale: str, run: str, reference: str = "hierarchy", root: Path | None = None,
                       endpoint_km: int = PRIMARY_KM, n_boot: int = N_BOOT) -> pd.DataFrame:
    """Every prediction method of one run (each head alone, f*, the remedies) against ``reference`` on the
    same images and seeds: mean accuracy and the paired difference method − reference with its
    seeds-then-blocks 95% CI ("—" in the reference's own row, which has no difference to itself)."""
    root = find_root() if root is None else Path(root)
    methods = read_result(scale, run, root)["test"]["methods"]
    key = f"{endpoint_km} km"
    rows = []
    for m in methods:
        hits, _ = seed_hits(seed_predictions(scale, run, root, m))
        row = {"method": m, f"acc {key} %": round(100 * float(hits[..., THRESHOLDS_KM.index(endpoint_km)].mean()), 2)}
        if m != reference:
            d = compare_runs(scale, run, run, root, n_boot=n_boot, method_a=m, method_b=reference).at(endpoint_km)
            row |= {f"− {reference} (points)": round(d["diff"], 3), "ci95 low": round(d["ci_lo"], 3),
                    "ci95 high": round(d["ci_hi"], 3), "verdict": interval_word(d["ci_lo"], d["ci_hi"])}
        rows.append(row)
    table = pd.DataFrame(rows).set_index("method")
    return table.astype(object).where(table.notna(), "—")


def results_table(results: dict[str, dict], method: str | None = None, split: str = "test") -> pd.DataFrame:
    """One row per experiment: accuracy (%) at the five thresholds (mean ± sd over seeds when there are
    several), the 95% interval of the primary endpoint (over seeds, then 5-degree blocks), and the first
    seed's median error and GeoScore."""
    rows = []
    for name, r in results.items():
        res = r[split]
        m = res["methods"][method or res["best"]]
        row = _summary_row(name, m, seeds=1)
        summary = r.get("seed_summary") if split == "test" and method is None else None
        if summary and summary["n_seeds"] > 1:
            row["seeds"] = summary["n_seeds"]
            for t in THRESHOLDS_KM:
                a = summary[f"acc_{t}km"]
                row[f"{t} km"] = f"{100 * a['mean']:.1f} ± {100 * a['sd']:.1f}"
            lo, hi = summary[f"acc_{PRIMARY_KM}km"]["ci95"]
            row[f"{PRIMARY_KM} km 95% CI"] = f"[{100 * lo:.1f}, {100 * hi:.1f}]"
        rows.append(row)
    return pd.DataFrame(rows).set_index("experiment")


def _summary_row(label: str, m: dict, seeds: int) -> dict:
    """One table row of a single summary: accuracy % per threshold, the primary endpoint's 95% block CI,
    median km and GeoScore."""
    row: dict = {"experiment": label, "seeds": seeds}
    for t in THRESHOLDS_KM:
        row[f"{t} km"] = f"{100 * m[f'acc_{t}km']:.1f}"
    lo, hi = m[f"acc_{PRIMARY_KM}km_ci95"]
    row[f"{PRIMARY_KM} km 95% CI"] = f"[{100 * lo:.1f}, {100 * hi:.1f}]"
    return row | {"median km": round(m["median_km"]), "GeoScore": round(m["geoscore"])}


def baselines_table(scale: str, root: Path | None = None) -> pd.DataFrame:
    """The baselines as rows in the layout of :func:`results_table` (one summary each, block CI)."""
    rows = [_summary_row(f"baseline: {name}", m, seeds=0) for name, m in baselines(scale, root).items()]
    return pd.DataFrame(rows).set_index("experiment")


def grid_table(scale: str, root: Path | None = None) -> pd.DataFrame:
    """Mean accuracy (%) at the primary distance over seeds, per model × share (rows) and auxiliary label."""
    root = find_root() if root is None else Path(root)
    rows = []
    for c in cells(scale):
        if (results_dir(scale, root) / f"{c.name}.json").exists():
            rows.append({"model": c.model, "train share": c.fraction,
                         "aux": c.aux + (f" ({c.variant})" if c.variant else ""),
                         "acc": round(100 * mean_accuracy(scale, c.name, root), 2)})
    t = pd.DataFrame(rows)
    if t.empty:
        return t
    return t.pivot_table(index=["model", "train share"], columns="aux", values="acc").map(
        lambda v: "—" if pd.isna(v) else f"{v:.1f}")


def recipe_table(scale: str, root: Path | None = None) -> pd.DataFrame:
    """The recipe candidates as trained by :func:`geomtl_core.compendium.grid.recipe`: validation accuracy,
    budget and regularisation."""
    rec = json.loads((results_dir(scale, root) / "recipe" / "chosen.json").read_text())
    rows = []
    for name, c in rec["candidates"].items():
        o = deep_merge({"model": {}, "train": {}}, c["overrides"])
        rows.append({"recipe": name, "chosen": name == rec["chosen"], "epochs": o["train"].get("epochs"),
                     "dropout": o["model"].get("dropout"), "weight decay": o["train"].get("weight_decay"),
                     "label smoothing": o["train"].get("label_smoothing"),
                     f"val acc {rec['endpoint_km']} km %": round(100 * c["val_acc"], 2),
                     "train time (s)": c["train_time_s"]})
    return pd.DataFrame(rows).set_index("recipe")


def granularity_choice_table(scale: str, root: Path | None = None) -> pd.DataFrame:
    """The partition granularities compared on validation under the chosen recipe (first seed), and which won."""
    rec = json.loads((results_dir(scale, root) / "recipe" / "chosen.json").read_text())
    rows = [{"granularity": name, "chosen": name == rec["partition"], "tau_min": c["partition"]["tau_min"],
             "tau_max": str(c["partition"]["tau_max"]),
             f"val acc {rec['endpoint_km']} km %": round(100 * c["val_acc"], 2)}
            for name, c in rec["partitions"].items()]
    return pd.DataFrame(rows).set_index("granularity")


def arm_choice_table(scale: str, root: Path | None = None) -> pd.DataFrame:
    """Per cell whose backbone learns: every candidate (epochs, scene weight) with its validation accuracy, and
    which one its arm trains with (:func:`geomtl_core.compendium.grid.arm_overrides`)."""
    rows = []
    for path in sorted((results_dir(scale, root) / "arms").glob("*.chosen.json")):
        rec = json.loads(path.read_text())
        for name, c in rec["candidates"].items():
            o = deep_merge({"model": {}, "train": {}}, c["overrides"])
            rows.append({"cell": rec["cell"], "epochs": o["train"]["epochs"],
                         "scene weight": o["model"].get("scene_weight", "—"), "chosen": name == rec["chosen"],
                         f"val acc {rec['endpoint_km']} km %": round(100 * c["val_acc"], 2),
                         "train time (s)": c["train_time_s"]})
    return pd.DataFrame(rows).set_index(["cell", "epochs", "scene weight"]) if rows else pd.DataFrame()


def verdict_display(table: pd.DataFrame) -> pd.DataFrame:
    """The verdict table as the book shows it: one compact row per comparison, the answer's columns first (the
    difference with its interval, the word, Holm p, the smallest effect the row detects at 80% power and its
    Holm level, and how the interval was made), then what the row compares."""
    def folds(r: pd.Series) -> str:
        n = int(r.get("n_folds", 1))
        return f"{n} (fold t)" if r.get("interval") == "fold t" else f"{n} (bootstrap)"

    rows = [{"comparison": r["comparison"],
             "b − a [95% CI]": f"{r['diff']:+.2f} [{r['ci_lo']:+.2f}, {r['ci_hi']:+.2f}]", "verdict": r["verdict"],
             "Holm p": f"{r['p_holm']:.3f}", "mde": f"{r['mde']:.1f}" if pd.notna(r.get("mde")) else "—",
             "folds": folds(r), "model": r["model"], "share": f"{round(100 * r['data_fraction'])}%",
             "aux": r["aux_label"], "a %": f"{r['a_mean']:.1f}", "b %": f"{r['b_mean']:.1f}",
             "family": _family_role(r)} for _, r in table.iterrows()]
    return pd.DataFrame(rows).set_index("comparison")


def _family_role(r: pd.Series) -> str:
    """A row's family, with "exploratory" beside every family but the confirmatory one."""
    fam = r.get("family", "all")
    return fam if r.get("role", "confirmatory") == "confirmatory" else f"{fam} (exploratory)"


def power_table(verdict: pd.DataFrame, scale: str, root: Path | None = None) -> pd.DataFrame:
    """What each confirmatory and positive-control row can resolve, on the scale's one test split ("split") and pooled
    over its cross-validation folds ("pooled", the verdict's numbers): the seed-to-seed sd of both arms'
    accuracy (points), the interval's half-width, the minimum detectable effect at the row's Holm level, and
    Kish's effective number of test blocks. Rows without folds show the split only."""
    from geomtl_core.compendium.results import compare_runs

    rows = []
    for _, r in verdict[verdict["family"].isin(["confirmatory", "positive_control"])].iterrows():
        res = {k: read_result(scale, r[f"{k}_run"], root) for k in ("a", "b")}
        split = r if r["n_folds"] == 1 else compare_runs(scale, r["b_run"], r["a_run"], root).at(PRIMARY_KM)
        row = {"family": r["family"], "model": r["model"], "share": f"{round(100 * r['data_fraction'])}%",
               "b": r["b_run"], "seeds": int(r["n_seeds"]), "folds": int(r["n_folds"])}
        for where in ("split", "pooled"):
            pooled = where == "pooled"
            summary = "cv_summary" if pooled and r["n_folds"] > 1 else "seed_summary"
            sd = {k: 100 * res[k][summary][f"acc_{PRIMARY_KM}km"]["sd"] for k in ("a", "b")}
            half = (r["ci_hi"] - r["ci_lo"]) / 2 if pooled else (split["ci_hi"] - split["ci_lo"]) / 2
            mde = r["mde"] if pooled or r["n_folds"] == 1 else \
                r["mde"] * split["se"] / r["se"] if r["se"] > 0 else float("nan")
            eff = r["n_blocks_eff"] if pooled else split["n_blocks_eff"]
            row |= {f"sd a ({where})": round(sd["a"], 2), f"sd b ({where})": round(sd["b"], 2),
                    f"± ({where})": round(half, 2), f"mde ({where})": round(mde, 2),
                    f"eff. blocks ({where})": round(eff, 1)}
        row["verdict"] = r["verdict"]
        rows.append(row)
    return pd.DataFrame(rows).set_index(["family", "model", "share"])


def _run_accuracy(scale: str, name: str, root: Path | None) -> np.ndarray:
    """(folds, seeds) accuracy at the primary distance (points) of a cross-validated experiment's runs."""
    folds = read_result(scale, name, root)["folds"]

    def acc(run: str) -> float:
        test = read_result(scale, run, root)["test"]
        return 100 * test["methods"][test["best"]][f"acc_{PRIMARY_KM}km"]

    return np.array([[acc(run) for run in seeds.values()] for seeds in folds.values()])


def variance_plan(verdict: pd.DataFrame, scale: str, root: Path | None = None, max_folds: int = 9,
                  max_seeds: int = 10) -> pd.DataFrame:
    """Where each cross-validated confirmatory or positive-control row's uncertainty comes from, and what more runs
    would buy: the variance components of its per-run difference (``geo.protocol.variance_components``: seed
    to seed within a fold, and between folds' test regions), its half-width and mde now, the cheapest design
    (fewest runs per arm, at least the scale's seeds) whose mde meets ``design.TARGETS``, and what ``max_seeds``
    seeds × ``max_folds`` folds reach (``geo.protocol.projected_se``; folds are bounded: each location is tested
    once, and fold 8 never)."""
    from geomtl_core.compendium.design import TARGETS
    from geomtl_core.geo.protocol import projected_se, variance_components

    rows = []
    rows_cv = verdict["family"].isin(["confirmatory", "positive_control"]) & (verdict["n_folds"] > 1)
    for _, r in verdict[rows_cv].iterrows():
        diff = _run_accuracy(scale, r["b_run"], root) - _run_accuracy(scale, r["a_run"], root)
        # one seed: the within-fold part cannot be told apart, so all of it counts as between folds (seeds buy nothing)
        comp = variance_components(diff) if diff.shape[1] > 1 else \
            {"within": 0.0, "between": float(diff.mean(axis=1).var(ddof=1))}
        s, f, se = int(r["n_seeds"]), int(r["n_folds"]), float(r["se"])

        def at(seeds: int, folds: int, comp=comp, s=s, f=f, se=se, r=r) -> tuple[float, float]:
            p = projected_se(se, comp["within"], comp["between"], s, f, seeds, folds)
            return 1.96 * p, float(r["mde"]) * p / se if se > 0 else float("nan")

        # a fold t needs at least two folds
        designs = {(n, k): at(n, k) for n in range(s, max_seeds + 1) for k in range(2, max_folds + 1)}
        meets = sorted((n * k, k, n) for (n, k), (half, mde) in designs.items()
                       if mde <= TARGETS["mde"])
        cheapest = f"{meets[0][2]} × {meets[0][1]}" if meets else f"none up to {max_seeds} × {max_folds}"
        best = at(max_seeds, max_folds)
        rows.append({"family": r["family"], "model": r["model"], "share": f"{round(100 * r['data_fraction'])}%",
                     "b": r["b_run"], "seeds × folds": f"{s} × {f}",
                     "var within folds": round(comp["within"], 2), "var between folds": round(comp["between"], 2),
                     "share between": round(comp["between"] / (comp["within"] / s + comp["between"]), 2)
                     if comp["within"] + comp["between"] > 0 else float("nan"),
                     "± now": round(1.96 * se, 2), "mde now": round(float(r["mde"]), 2),
                     "cheapest seeds × folds meeting the targets": cheapest,
                     f"± at {plural(max_seeds, 'seed')} × {plural(max_folds, 'fold')}": round(best[0], 2),
                     f"mde at {plural(max_seeds, 'seed')} × {plural(max_folds, 'fold')}": round(best[1], 2)})
    return pd.DataFrame(rows).set_index(["family", "model", "share"]) if rows else pd.DataFrame()


def _mean_of_runs(scale: str, res: dict, key: str, root: Path | None) -> float:
    """Mean of a number over an experiment's runs on the scale's split (one per seed); NaN where none has it."""
    vals = [read_result(scale, run, root).get(key) for run in res.get("seeds", {"0": res["name"]}).values()]
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else float("nan")


def pareto_front(cost: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Rows no other row beats: none at most as costly and at least as accurate, strictly better in one.

    >>> pareto_front(np.array([1.0, 2.0, 3.0]), np.array([10.0, 5.0, 12.0])).tolist()
    [True, False, True]
    """
    c, a = np.asarray(cost, float)[:, None], np.asarray(acc, float)[:, None]
    beaten = (c.T <= c) & (a.T >= a) & ((c.T < c) | (a.T > a))
    return ~beaten.any(axis=1)


def cost_table(scale: str, root: Path | None = None) -> pd.DataFrame:
    """Accuracy within the primary distance against what it costs, one row per method of every grid cell that
    ran (f*, and the hybrid and kNN where the cell scored them): accuracy with its seeds-then-blocks 95%
    interval, parameters, training time (mean over seeds, measured here), evaluation time per test image,
    gallery memory, training images; ``pareto`` marks the rows no other beats on training time and accuracy."""
    from geomtl_core.compendium.design import model_label
    from geomtl_core.compendium.statistics import seed_summary

    root = find_root() if root is None else Path(root)
    rows = []
    for c in cells(scale):
        try:
            res = read_result(scale, c.name, root)
        except FileNotFoundError:
            continue
        retr = res.get("retrieval") or {}  # the first seed's gallery and search time
        train_s = _mean_of_runs(scale, res, "train_time_s", root)
        eval_ms = _mean_of_runs(scale, res, "test_ms_per_image", root)
        for method in ["f*"] + [m for m in ("knn", "hybrid") if m in res["test"]["methods"]]:
            summary = res["seed_summary"] if method == "f*" else \
                seed_summary(seed_predictions(scale, c.name, root, method))
            s = summary[f"acc_{PRIMARY_KM}km"]
            rows.append({
                "model": model_label(c.model, scale), "share": f"{round(100 * c.fraction)}%",
                "aux": c.aux + (f" ({c.variant})" if c.variant else ""), "method": method, "run": c.name,
                f"acc {PRIMARY_KM} km %": round(100 * s["mean"], 2), "ci95 low": round(100 * s["ci95"][0], 2),
                "ci95 high": round(100 * s["ci95"][1], 2), "params": res.get("params"),
                "train time (s)": round(train_s, 1),
                "eval ms/image": round(eval_ms + (retr.get("search_ms_per_image", {}).get(method, 0.0)), 3),
                "gallery (MiB)": 0.0 if method == "f*" else retr.get("gallery_mib_float16", float("nan")),
                "train images": res.get("geo_labelled_images") or res.get("train_images")})
    table = pd.DataFrame(rows)
    if not table.empty:
        table["pareto"] = pareto_front(table["train time (s)"].to_numpy(), table[f"acc {PRIMARY_KM} km %"].to_numpy())
    return table


def _float16_columns(r: dict) -> dict:
    """The float16 gallery's effect on the hybrid's test answers (results written before it was measured: none)."""
    f16 = r.get("float16_gallery")
    if f16 is None:
        return {}
    delta = 100 * (f16["test_accuracy"] - r["test_accuracy"]["hybrid"])
    return {f"float16 gallery: Δ test acc {r['km']:g} km (points)": round(delta, 3),
            "float16 gallery: answers moved %": round(100 * f16["answers_moved"], 3)}


def retrieval_settings_table(scale: str, root: Path | None = None) -> pd.DataFrame:
    """Per retrieval cell (first seed): the hybrid's and kNN's settings chosen on validation, their validation
    accuracy within the choosing distance, the gallery's size, what storing it as float16 (as a bundle does)
    changes on test, and the search time per test image ("—" where a result predates a column)."""
    from geomtl_core.compendium.design import retrieval_cells

    rows = []
    for c in retrieval_cells(scale):
        r = read_result(scale, c.name, root).get("retrieval")
        if r is None:
            continue
        h, k = r["hybrid"], r["knn"]
        rows.append({"run": c.name, "share": f"{round(100 * c.fraction)}%", "aux": c.aux,
                     "hybrid: embedding": h.get("embedding", "backbone"),
                     "hybrid: top cells": h["top_cells"], "hybrid: k": h["k"], "hybrid: kernel km": h["kernel_km"],
                     f"hybrid: val acc {r['km']:g} km %": round(100 * h["val_accuracy"], 2),
                     "kNN: embedding": k.get("embedding", "backbone"), "kNN: k": k["k"],
                     "kNN: kernel km": k["kernel_km"],
                     f"kNN: val acc {r['km']:g} km %": round(100 * k["val_accuracy"], 2),
                     "gallery images": r["gallery_images"], "gallery (MiB, float16)": r["gallery_mib_float16"],
                     **_float16_columns(r),
                     "search ms/image (hybrid, kNN)": f"{r['search_ms_per_image']['hybrid']:.3f}, "
                                                      f"{r['search_ms_per_image']['knn']:.3f}"})
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows).set_index("run")
    return table.astype(object).where(table.notna(), "—")
