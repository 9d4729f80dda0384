"""The one verdict: every comparison of the design (:func:`geomtl_core.compendium.design.comparisons`) on the
primary endpoint, b − a over seeds then blocks, Holm within each declared family, the minimum detectable effect
at the row's Holm level, and a word per row (:func:`geomtl_core.geo.protocol.verdict_word`: helps, hurts,
equivalent within the margin, or not resolved); written to ``results/<scale>/verdict.csv``."""

from __future__ import annotations

from pathlib import Path

from geomtl_core.compendium.design import (
    FAMILIES,
    METHODS_FAMILY,
    Cell,
    comparisons,
    family,
    method_comparisons,
    role,
)
from geomtl_core.compendium.project import find_root
from geomtl_core.compendium.provision import benchmark_of
from geomtl_core.compendium.results import compare_runs, read_result, results_dir
from geomtl_core.geo.protocol import (
    ALPHA,
    EQUIV_MARGIN,
    N_BOOT,
    N_BOOT_VERDICT,
    PRIMARY_KM,
    minimum_detectable_effect,
    verdict_word,
)
from geomtl_core.geo.stats import holm

import numpy as np
import pandas as pd

VERDICT_COLUMNS = ["family", "comparison", "model", "data_fraction", "aux_label", "endpoint", "a_mean", "b_mean",
                   "diff", "ci_lo", "ci_hi", "se", "p", "p_holm", "mde", "equiv_margin", "n_seeds", "n_folds",
                   "interval", "df", "n_images", "n_blocks", "n_blocks_eff"]
"""The columns of a verdict row; ``interval`` says how ci and p were made: ``fold t`` (a t over the fold means of
seed-averaged paired differences, ``df`` = folds − 1) where the row is cross-validated, else ``block bootstrap``
(seeds, then blocks, on one split: no fold-level replication)."""


def comparison_row(scale: str, label: str, a: Cell, b: Cell, root: Path, n_boot: int = N_BOOT_VERDICT) -> dict:
    """One verdict row: b − a at the primary endpoint (points), its seeds-then-blocks CI and raw p, pooled over
    the cross-validation folds when both runs are cross-validated (blocks nested in folds); the means and the
    paired difference stand on the seeds both ran (:func:`~geomtl_core.compendium.results.compare_runs`)."""
    res = {c.name: read_result(scale, c.name, root) for c in (a, b)}
    folds = [sorted(res[c.name].get("folds") or []) for c in (a, b)]
    pooled = bool(folds[0]) and folds[0] == folds[1]
    d = compare_runs(scale, b.name, a.name, root, n_boot=n_boot, pooled=pooled).at(PRIMARY_KM)  # b − a
    return {"family": family(label, b, scale), "comparison": label, "model": b.model, "data_fraction": b.fraction,
            "aux_label": b.aux, "endpoint": f"acc_{PRIMARY_KM}km", "a_mean": d["acc_b"], "b_mean": d["acc_a"],
            "diff": d["diff"], "ci_lo": d["ci_lo"], "ci_hi": d["ci_hi"], "p": d["p"], "se": d["se"],
            "n_seeds": d["n_seeds"], "n_folds": len(folds[0]) if pooled else 1, "interval": d["interval"],
            "df": d["df"], "n_images": d["n_images"], "n_blocks": d["n_blocks"], "n_blocks_eff": d["n_blocks_eff"],
            "a_run": a.name, "b_run": b.name}


def method_row(scale: str, label: str, a: Cell, method_a: str, b: Cell, method_b: str, root: Path,
               n_boot: int = N_BOOT_VERDICT) -> dict:
    """One ``methods.csv`` row: b's ``method_b`` − a's ``method_a`` at the primary endpoint (``"fstar"``: the
    run's own best method), paired on images and seeds, on the scale's split: the hybrid and kNN are scored there
    only (:func:`~geomtl_core.compendium.runs.experiment_units`), so every row is exploratory."""
    res = {c.name: read_result(scale, c.name, root) for c in (a, b)}
    names = [res[c.name]["test"]["best"] if m == "fstar" else m for c, m in ((a, method_a), (b, method_b))]
    d = compare_runs(scale, b.name, a.name, root, n_boot=n_boot, method_a=names[1],
                     method_b=names[0]).at(PRIMARY_KM)
    return {"family": METHODS_FAMILY[0], "comparison": label, "model": b.model, "data_fraction": b.fraction,
            "aux_label": b.aux, "endpoint": f"acc_{PRIMARY_KM}km", "a_mean": d["acc_b"], "b_mean": d["acc_a"],
            "diff": d["diff"], "ci_lo": d["ci_lo"], "ci_hi": d["ci_hi"], "p": d["p"], "se": d["se"],
            "n_seeds": d["n_seeds"], "n_folds": 1, "interval": d["interval"],
            "df": d["df"], "n_images": d["n_images"], "n_blocks": d["n_blocks"], "n_blocks_eff": d["n_blocks_eff"],
            "a_run": a.name, "b_run": b.name, "a_method": method_a, "b_method": method_b}


def methods_table(scale: str, root: Path | None = None, n_boot: int = N_BOOT_VERDICT) -> pd.DataFrame:
    """The method comparisons of :func:`geomtl_core.compendium.design.method_comparisons` (the verdict's columns,
    then the runs, methods and a word per row), Holm within their own family; written to
    ``results/<scale>/methods.csv``. Empty when the scale declares no retrieval cell."""
    root = find_root() if root is None else Path(root)
    rows = [method_row(scale, label, a, ma, b, mb, root, n_boot) for label, a, ma, b, mb in method_comparisons(scale)]
    cols = [*VERDICT_COLUMNS, "a_run", "b_run", "a_method", "b_method", "verdict"]
    table = decide(pd.DataFrame(rows))[cols].round(4) if rows else pd.DataFrame(columns=cols)
    table = table.assign(benchmark=benchmark_of(scale, root),  # the benchmark version the rows were measured on
                         role="exploratory")
    table.to_csv(results_dir(scale, root) / "methods.csv", index=False)
    return table


def holm_levels(p: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """The level each p-value of a family is held to by Holm's step-down: alpha / (m − rank + 1), rank 1 the
    smallest p (ties in their order)."""
    m = len(p)
    rank = np.empty(m, dtype=np.int64)
    rank[np.argsort(p, kind="stable")] = np.arange(1, m + 1)
    return alpha / (m - rank + 1)


def decide(table: pd.DataFrame, margin: float = EQUIV_MARGIN) -> pd.DataFrame:
    """Holm within each family (column ``family``; one family when absent): ``p`` -> ``p_holm``; the minimum
    detectable effect at the row's Holm level with 80% power from its standard error ``se`` (when given); and a
    word per row: helps / hurts (interval beside 0 and Holm p < alpha), no information (a zero-width interval,
    or both arms' accuracies ``a_mean``/``b_mean`` at the floor), equivalent (interval inside ±margin), or not
    resolved."""
    table = table.copy()
    fam = table["family"] if "family" in table else pd.Series("all", index=table.index)
    table["p_holm"] = np.nan
    table["mde"] = np.nan
    for _, idx in table.groupby(fam, sort=False).groups.items():
        p = table.loc[idx, "p"].to_numpy(float)
        table.loc[idx, "p_holm"] = holm(p)
        if "se" in table:
            levels = holm_levels(p)
            dfs = table.loc[idx, "df"] if "df" in table else pd.Series(None, index=idx, dtype=object)
            table.loc[idx, "mde"] = [minimum_detectable_effect(se, lvl, df=None if pd.isna(df) else int(df))
                                     for se, lvl, df in zip(table.loc[idx, "se"], levels, dfs, strict=True)]
    table["equiv_margin"] = margin
    arms = list(zip(table["a_mean"], table["b_mean"], strict=True)) if {"a_mean", "b_mean"} <= set(table) \
        else [None] * len(table)
    table["verdict"] = [verdict_word(lo, hi, ph, margin, arms=ab)
                        for lo, hi, ph, ab in zip(table["ci_lo"], table["ci_hi"], table["p_holm"], arms, strict=True)]
    return table


def verdict_table(scale: str, root: Path | None = None, n_boot: int = N_BOOT_VERDICT,
                  pairs: list[tuple[str, Cell, Cell]] | None = None) -> pd.DataFrame:
    """The verdict table (columns :data:`VERDICT_COLUMNS`, then the run names and a verdict word) of the
    design's comparisons (or ``pairs``), Holm within each family, rows in the order of
    :data:`geomtl_core.compendium.design.FAMILIES`; written to ``results/<scale>/verdict.csv``."""
    root = find_root() if root is None else Path(root)
    pairs = comparisons(scale) if pairs is None else pairs
    table = decide(pd.DataFrame([comparison_row(scale, label, a, b, root, n_boot) for label, a, b in pairs]))
    order = {f: k for k, f in enumerate(FAMILIES)}
    table = table.sort_values("family", key=lambda f: f.map(order), kind="stable")
    table = table[[*VERDICT_COLUMNS, "a_run", "b_run", "verdict"]].round(4)
    # the benchmark version the rows were measured on, and whether a row is confirmatory or exploratory
    table = table.assign(benchmark=benchmark_of(scale, root), role=table["family"].map(role))
    table.to_csv(results_dir(scale, root) / "verdict.csv", index=False)
    return table


def paper_trends(scale: str, root: Path | None = None, thresholds: tuple[int, ...] = (200, 750, 2500),
                 n_boot: int = N_BOOT) -> pd.DataFrame:
    """``results/<scale>/paper_trends.csv``: per claim of :func:`~geomtl_core.compendium.paper_claims.claims` and
    threshold, the proxy's b − a on the seeds both runs ran (points, 95% CI over seeds then blocks, p, and Holm p
    over the claims at that threshold, one family per distance; exploratory rows) and the paper's (Im2GPS, 237
    images; empty where the paper published no such pair or the reference files are absent), with the paper's
    block-bootstrap interval."""
    from geomtl_core.compendium.paper_claims import TREND_COLUMNS, claim_side_label, claims, shared_reference
    from geomtl_core.compendium.statistics import compare_files

    root = find_root() if root is None else Path(root)
    ref = shared_reference()
    rows = []
    for c in claims(scale, root):
        d = compare_runs(scale, c["b"][0], c["a"][0], root, n_boot=n_boot,  # b − a, on the seeds both ran
                         method_a=c["b"][1], method_b=c["a"][1])
        p = None
        if c["paper"] and ref is not None:
            p = compare_files([ref / f"{c['paper'][1]}.csv"], [ref / f"{c['paper'][0]}.csv"], n_boot=n_boot)
        for t in thresholds:
            x, y = d.at(t), (p.at(t) if p is not None else None)
            rows.append({"claim": c["claim"], "method_a": claim_side_label(c["a"]),
                         "method_b": claim_side_label(c["b"]),
                         "endpoint": f"acc_{t}km", "diff": x["diff"], "ci_lo": x["ci_lo"], "ci_hi": x["ci_hi"],
                         "p": x["p"], "n_seeds": x["n_seeds"], "paper_diff": y["diff"] if y else np.nan,
                         "paper_ci_lo": y["ci_lo"] if y else np.nan, "paper_ci_hi": y["ci_hi"] if y else np.nan,
                         "paper_pair": " → ".join(c["paper"]) if c["paper"] else ""})
    table = pd.DataFrame(rows)
    table["p_holm"] = table.groupby("endpoint")["p"].transform(lambda p: holm(p.to_numpy()))  # family: one distance
    table = table[[*TREND_COLUMNS, "paper_ci_lo", "paper_ci_hi", "paper_pair"]].round(3)
    table = table.assign(benchmark=benchmark_of(scale, root), role="exploratory")
    table.to_csv(results_dir(scale, root) / "paper_trends.csv", index=False)
    return table
