"""Comparisons across seeds: paired by seed and image, intervals over seeds then blocks, Holm over a family."""

import json
from pathlib import Path

from geomtl_core.compendium.report import compare_runs, verdict_table
from geomtl_core.data.predictions import write_predictions

import numpy as np
import pytest


def _fake_experiment(root: Path, scale: str, name: str, shift_km: float, seeds=(0, 1, 2), noise=0.0):
    """Per-seed prediction files: predictions `shift_km` east of the truth (plus per-seed noise)."""
    rng = np.random.default_rng(0)  # the same test images for every experiment
    lat = np.repeat(np.linspace(-60, 60, 40), 10) + rng.normal(0, 0.2, 400)
    lon = np.tile(np.linspace(-170, 170, 10), 40) + rng.normal(0, 0.2, 400)
    ids = np.array([f"img{k:04d}" for k in range(400)])
    runs = {}
    for s in seeds:
        run = name if s == seeds[0] else f"{name}.s{s}"
        d = shift_km + noise * np.random.default_rng(s).normal(0, 1, 400) ** 2
        dlon = d / (111.2 * np.cos(np.radians(lat)))
        write_predictions(root / "runs" / scale / run / "predictions_test.csv", ids, lat, lon, lat, lon + dlon)
        runs[str(s)] = run
    (root / "results" / scale).mkdir(parents=True, exist_ok=True)
    best = {"methods": {"hierarchy": {"acc_200km": 0.0}}, "best": "hierarchy"}
    (root / "results" / scale / f"{name}.json").write_text(json.dumps({"seeds": runs, "test": best}))


def test_identical_runs_differ_by_exactly_zero(tmp_path):
    _fake_experiment(tmp_path, "x", "a", 150.0)
    _fake_experiment(tmp_path, "x", "b", 150.0)
    d = compare_runs("x", "a", "b", root=tmp_path, n_boot=300)
    assert (d["difference (points)"] == 0).all() and (d["ci95 low"] == 0).all() and (d["n_seeds"] == 3).all()


def test_a_real_difference_is_found_and_seed_noise_widens_the_interval(tmp_path):
    _fake_experiment(tmp_path, "x", "near", 150.0)
    _fake_experiment(tmp_path, "x", "far", 260.0)  # every image beyond 200 km
    d = compare_runs("x", "far", "near", root=tmp_path, n_boot=300)
    assert d.loc["200 km", "difference (points)"] == pytest.approx(100.0)
    assert d.loc["200 km", "ci95 low"] > 0 and d.loc["200 km", "n_blocks"] > 30
    _fake_experiment(tmp_path, "x", "noisy", 150.0, noise=60.0)
    quiet = compare_runs("x", "near", "far", root=tmp_path, n_boot=500)
    noisy = compare_runs("x", "noisy", "far", root=tmp_path, n_boot=500)
    width = lambda t: (t.loc["200 km", "ci95 high"] - t.loc["200 km", "ci95 low"])  # noqa: E731
    assert width(noisy) > width(quiet)


def test_verdict_table_holm_adjusts_over_its_family(tmp_path):
    for name, shift in (("st", 210.0), ("better", 150.0), ("same", 210.0)):
        _fake_experiment(tmp_path, "x", name, shift)
    table = verdict_table("x", [("better vs st", "st", "better"), ("same vs st", "st", "same"),
                                ("missing", "st", "nope")], root=tmp_path, n_boot=300)
    assert list(table.index) == ["better vs st", "same vs st"]  # missing runs are left out, not invented
    assert table.loc["better vs st", "verdict"] == "b better" and table.loc["same vs st", "verdict"] == "not resolved"
    assert (table["p_holm"] >= table["p"]).all()
    assert {"a %", "b %", "b − a (points)", "ci95 low", "ci95 high", "n_seeds", "n_blocks"} <= set(table.columns)
