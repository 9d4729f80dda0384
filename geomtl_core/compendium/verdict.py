"""The one verdict: every comparison of the design (:func:`geomtl_core.compendium.design.comparisons`) on the
primary endpoint, b − a over seeds then blocks, Holm over the whole family, a word per row
(:func:`geomtl_core.geo.protocol.interval_word`); written to ``results/<scale>/verdict.csv``."""

from __future__ import annotations

from pathlib import Path

from geomtl_core.compendium.design import Cell, comparisons
from geomtl_core.compendium.project import find_root
from geomtl_core.compendium.results import compare_runs, mean_accuracy, read_result, results_dir
from geomtl_core.geo.protocol import N_BOOT, PRIMARY_KM, VERDICT_WORDS, interval_word
from geomtl_core.geo.stats import holm

import numpy as np
import pandas as pd

VERDICT_COLUMNS = ["comparison", "model", "data_fraction", "aux_label", "endpoint", "a_mean", "b_mean", "diff",
                   "ci_lo", "ci_hi", "p_holm", "n_seeds", "n_blocks"]


def comparison_row(scale: str, label: str, a: Cell, b: Cell, root: Path, n_boot: int = N_BOOT) -> dict:
    """One verdict row: b − a at the primary endpoint (points), its seeds-then-blocks CI and raw p; runs with
    different numbers of seeds are refused (the means and the paired difference must stand on the same seeds)."""
    seeds = {c.name: len(read_result(scale, c.name, root)["seeds"]) for c in (a, b)}
    if len(set(seeds.values())) > 1:
        raise ValueError(f"{label}: runs with different numbers of seeds {seeds}; rerun the missing seeds")
    d = compare_runs(scale, b.name, a.name, root, n_boot=n_boot).at(PRIMARY_KM)  # b − a
    return {"comparison": label, "model": b.model, "data_fraction": b.fraction, "aux_label": b.aux,
            "endpoint": f"acc_{PRIMARY_KM}km", "a_mean": 100 * mean_accuracy(scale, a.name, root),
            "b_mean": 100 * mean_accuracy(scale, b.name, root), "diff": d["diff"], "ci_lo": d["ci_lo"],
            "ci_hi": d["ci_hi"], "p": d["p"], "n_seeds": d["n_seeds"], "n_blocks": d["n_blocks"],
            "a_run": a.name, "b_run": b.name}


def decide(table: pd.DataFrame) -> pd.DataFrame:
    """Holm over the family of rows (column ``p`` -> ``p_holm``) and a word per row: supported (interval above
    0 and Holm p < alpha), contradicted (below 0, likewise) or not resolved."""
    table = table.copy()
    table["p_holm"] = holm(table["p"].to_numpy())
    table["verdict"] = [interval_word(lo, hi, ph, VERDICT_WORDS)
                        for lo, hi, ph in zip(table["ci_lo"], table["ci_hi"], table["p_holm"], strict=True)]
    return table


def verdict_table(scale: str, root: Path | None = None, n_boot: int = N_BOOT,
            pairs: list[tuple[str, Cell, Cell]] | None = None) -> pd.DataFrame:
    """The verdict table (columns :data:`VERDICT_COLUMNS`, then the run names and a verdict word) of the
    design's comparisons (or ``pairs``), Holm over all rows; written to ``results/<scale>/verdict.csv``."""
    root = find_root() if root is None else Path(root)
    pairs = comparisons(scale) if pairs is None else pairs
    table = decide(pd.DataFrame([comparison_row(scale, label, a, b, root, n_boot) for label, a, b in pairs]))
    table = table[[*VERDICT_COLUMNS, "a_run", "b_run", "verdict"]].round(4)
    table.to_csv(results_dir(scale, root) / "verdict.csv", index=False)
    return table


def intervals_contain_diff(table: pd.DataFrame) -> bool:
    """Every verdict row has finite numbers and an interval containing its difference."""
    num = table[["diff", "ci_lo", "ci_hi"]].to_numpy(float)
    return bool(np.isfinite(num).all() and ((num[:, 1] <= num[:, 0]) & (num[:, 0] <= num[:, 2])).all())
