"""Comparisons across seeds: one sign convention (A − B), paired by seed and image, intervals over seeds then
blocks checked against their analytic variance, Holm over a family, and the verdict on runs with known effects."""

import json
import subprocess
import sys
from pathlib import Path

from geomtl_core.compendium.design import Cell
from geomtl_core.compendium.results import compare_runs
from geomtl_core.compendium.statistics import compare_files, seed_summary
from geomtl_core.compendium.verdict import decide, verdict_table
from geomtl_core.data.predictions import write_predictions
from geomtl_core.geo.protocol import PRIMARY_KM
from geomtl_core.geo.stats import hierarchical_bootstrap

import numpy as np
import pandas as pd
import pytest

NEAR, FAR = 0.75 * PRIMARY_KM, 1.3 * PRIMARY_KM
"""Fake predictions this far east of the truth: every image within the primary endpoint, or none."""


def _fake_experiment(root: Path, scale: str, name: str, shift_km: float, seeds=(0, 1, 2), noise=0.0):
    """Per-seed prediction files: predictions `shift_km` east of the truth (plus per-seed noise), and a
    result file with its seeds and seed summary."""
    rng = np.random.default_rng(0)  # the same test images for every experiment
    lat = np.repeat(np.linspace(-60, 60, 40), 10) + rng.normal(0, 0.2, 400)
    lon = np.tile(np.linspace(-170, 170, 10), 40) + rng.normal(0, 0.2, 400)
    ids = np.array([f"img{k:04d}" for k in range(400)])
    runs = {}
    for s in seeds:
        run = name if s == seeds[0] else f"{name}.s{s}"
        d = shift_km + noise * np.random.default_rng(s).normal(0, 1, 400) ** 2
        dlon = d / (111.2 * np.cos(np.radians(lat)))
        pred_lon = (lon + dlon + 180) % 360 - 180
        write_predictions(root / "runs" / scale / run / "predictions_test.csv", ids, lat, lon, lat, pred_lon)
        runs[str(s)] = run
    (root / "results" / scale).mkdir(parents=True, exist_ok=True)
    best = {"methods": {"hierarchy": {f"acc_{PRIMARY_KM}km": 0.0}}, "best": "hierarchy"}
    summary = seed_summary([root / "runs" / scale / r / "predictions_test.csv" for r in runs.values()], n_boot=50)
    (root / "results" / scale / f"{name}.json").write_text(json.dumps({"seeds": runs, "test": best,
                                                                      "seed_summary": summary}))


def test_identical_runs_differ_by_exactly_zero(tmp_path):
    _fake_experiment(tmp_path, "x", "a", NEAR)
    _fake_experiment(tmp_path, "x", "b", NEAR)
    d = compare_runs("x", "a", "b", root=tmp_path, n_boot=300)
    assert (d.diff == 0).all() and (d.ci == 0).all() and d.n_seeds == 3


def test_the_sign_is_a_minus_b_everywhere(tmp_path):
    """A − B: the first argument minus the second, in the Python API, the run comparison and the CLI. Catches a
    flipped sign in :func:`geomtl_core.geo.stats.paired_comparison` (the CLI and the book once disagreed)."""
    _fake_experiment(tmp_path, "x", "near", NEAR)  # every image within the primary endpoint
    _fake_experiment(tmp_path, "x", "far", FAR)  # every image beyond it
    d = compare_runs("x", "near", "far", root=tmp_path, n_boot=300).at(PRIMARY_KM)
    assert d["diff"] == pytest.approx(100.0) and d["ci_lo"] > 0 and d["acc_a"] == pytest.approx(100.0)
    files = [tmp_path / "runs" / "x" / n / "predictions_test.csv" for n in ("near", "far")]
    out = subprocess.run([sys.executable, "-m", "geomtl_core.cli", "compare", *map(str, files), "--json",
                          "--n-boot", "200"], capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["thresholds_km"][str(PRIMARY_KM)]["diff"] == pytest.approx(1.0)


def test_a_real_difference_is_found_and_seed_noise_widens_the_interval(tmp_path):
    _fake_experiment(tmp_path, "x", "near", NEAR)
    _fake_experiment(tmp_path, "x", "far", FAR)
    d = compare_runs("x", "near", "far", root=tmp_path, n_boot=300)
    assert d.at(PRIMARY_KM)["ci_lo"] > 0 and d.n_blocks > 30
    _fake_experiment(tmp_path, "x", "noisy", NEAR, noise=60.0)
    quiet = compare_runs("x", "far", "near", root=tmp_path, n_boot=500).at(PRIMARY_KM)
    noisy = compare_runs("x", "far", "noisy", root=tmp_path, n_boot=500).at(PRIMARY_KM)
    assert noisy["ci_hi"] - noisy["ci_lo"] > quiet["ci_hi"] - quiet["ci_lo"]


def test_runs_with_unequal_seeds_are_compared_on_the_seeds_both_ran(tmp_path):
    """An experiment with more seeds (the A/A cell) is compared on the seeds the other ran, by seed number, and
    runs with no seed in common are refused. Catches pairing seed 1 of one run with seed 0 of another, and a
    comparison that silently averages seeds one arm never ran."""
    _fake_experiment(tmp_path, "x", "three", NEAR, noise=60.0)
    _fake_experiment(tmp_path, "x", "two", FAR, seeds=(0, 2))
    d = compare_runs("x", "three", "two", root=tmp_path, n_boot=200)
    assert d.n_seeds == 2
    only = compare_files(*[[tmp_path / "runs" / "x" / r / "predictions_test.csv" for r in runs]
                           for runs in (("three", "three.s2"), ("two", "two.s2"))], n_boot=200)
    assert d.at(PRIMARY_KM)["diff"] == pytest.approx(only.at(PRIMARY_KM)["diff"])
    _fake_experiment(tmp_path, "x", "other", NEAR, seeds=(5, 6))
    with pytest.raises(ValueError, match="no seed in common"):
        compare_runs("x", "three", "other", root=tmp_path)


def _analytic_variance(values: np.ndarray, blocks: np.ndarray) -> float:
    """Exact variance of the seeds-then-blocks bootstrap mean (equal block sizes): seed weights w = m/S with
    m ~ Multinomial(S, 1/S), block counts c ~ Multinomial(B, 1/B), independent; mean = sum_sb w_s c_b M_sb / B."""
    n_seeds, n_blocks = values.shape[0], int(blocks.max()) + 1
    m = np.stack([np.bincount(blocks, v, minlength=n_blocks) / np.bincount(blocks) for v in values])  # (S, B)
    ew = (np.eye(n_seeds) * (1 - 1 / n_seeds) / n_seeds ** 2 - (1 - np.eye(n_seeds)) / n_seeds ** 3
          + 1 / n_seeds ** 2)  # E[w_s w_t]
    ec = np.eye(n_blocks) - 1 / n_blocks + 1  # E[c_b c_d]
    second = float(np.sum(ew * (m @ ec @ m.T))) / n_blocks ** 2
    return second - float(m.mean()) ** 2


def test_hierarchical_bootstrap_matches_its_analytic_variance():
    """Data with a strong seed effect, a seed × block interaction and a block effect: the bootstrap's variance
    equals the exact variance of resampling seeds, then blocks (within 6%). Catches a bootstrap that drops the
    seed resampling (its variance falls to the blocks-only value, about half here) or the block resampling."""
    rng = np.random.default_rng(1)
    n_seeds, n_blocks, per = 3, 30, 4
    blocks = np.repeat(np.arange(n_blocks), per)
    seed_effect = np.array([-0.3, 0.0, 0.3])[:, None]
    block_effect = rng.normal(0, 0.3, n_blocks)[blocks][None]
    interaction = rng.normal(0, 0.3, (n_seeds, n_blocks))[:, blocks]
    values = seed_effect + block_effect + interaction + rng.normal(0, 0.1, (n_seeds, n_blocks * per))
    reps = hierarchical_bootstrap(values, blocks, n_boot=20_000, seed=3)[:, 0]
    exact = _analytic_variance(values, blocks)
    blocks_only = _analytic_variance(values.mean(0, keepdims=True), blocks)
    assert blocks_only < 0.7 * exact  # the design separates the two (else the test could not fail)
    assert reps.var() == pytest.approx(exact, rel=0.06)
    assert reps.mean() == pytest.approx(values.mean(), abs=0.01)


def _rows(*p_lo_hi):
    return pd.DataFrame([{"comparison": f"c{k}", "diff": (lo + hi) / 2, "ci_lo": lo, "ci_hi": hi, "p": p}
                         for k, (p, lo, hi) in enumerate(p_lo_hi)])


def test_holm_decides_over_the_family():
    """Three intervals above 0 with p = 0.02, 0.03, 0.04: alone each helps, as a family of three none
    survives Holm (0.06, 0.06, 0.06). Catches a verdict that skips Holm or adjusts within a row only."""
    alone = decide(_rows((0.02, 0.5, 2.0)))
    assert alone.loc[0, "verdict"] == "helps" and alone.loc[0, "p_holm"] == pytest.approx(0.02)
    family = decide(_rows((0.02, 0.5, 2.0), (0.03, 0.4, 2.0), (0.04, 0.1, 2.0)))
    np.testing.assert_allclose(family["p_holm"], [0.06, 0.06, 0.06])
    assert (family["verdict"] == "not resolved").all()
    strong = decide(_rows((0.001, 0.5, 2.0), (0.03, 0.4, 2.0), (0.04, -2.0, -0.1)))
    assert strong["verdict"].tolist() == ["helps", "not resolved", "not resolved"]
    assert decide(_rows((0.001, -2.0, -0.5)))["verdict"].tolist() == ["hurts"]
    # Holm within each declared family, not across them
    two = decide(_rows((0.02, 0.5, 2.0), (0.03, 0.4, 2.0)).assign(family=["confirmatory", "controls"]))
    assert two["verdict"].tolist() == ["helps", "helps"] and two["p_holm"].tolist() == pytest.approx([0.02, 0.03])


def test_equivalent_needs_the_whole_interval_inside_the_margin():
    """A small, well-measured difference is "equivalent" (the interval inside ±1 point); a wide one stays
    "not resolved"; an interval beside 0 but inside the margin still helps (a resolved effect is reported)."""
    rows = decide(_rows((0.6, -0.9, 0.8), (0.6, -1.2, 0.8), (0.001, 0.2, 0.9)))
    assert rows["verdict"].tolist() == ["equivalent", "not resolved", "helps"]
    assert (rows["equiv_margin"] == 1.0).all()


def test_verdict_on_runs_with_known_effects(tmp_path):
    """The one verdict on fake runs: b − a's sign and size (b twice better by +100 points at the primary endpoint,
    once equal on every image: a zero-width interval, "no information", not "equivalent"), its interval containing the
    difference, Holm over all rows, and refusal of runs with no seed in common."""
    cells = {k: Cell("frozen", 0.1, k) for k in ("st", "s3", "s16", "kg")}
    for aux, shift in (("st", FAR), ("s3", NEAR), ("s16", FAR), ("kg", NEAR)):
        _fake_experiment(tmp_path, "x", cells[aux].name, shift)
    (tmp_path / "results" / "x").mkdir(parents=True, exist_ok=True)
    pairs = [("mtl_vs_st", cells["st"], cells["s3"]), ("mtl_vs_st", cells["st"], cells["s16"]),
             ("koppen_geographic_label_vs_st", cells["st"], cells["kg"])]
    table = verdict_table("x", tmp_path, n_boot=300, pairs=pairs)
    assert table["family"].tolist() == ["confirmatory", "secondary", "controls"]
    assert table["role"].tolist() == ["confirmatory", "exploratory", "exploratory"]
    assert table["diff"].tolist() == pytest.approx([100.0, 0.0, 100.0])
    assert (table["n_images"] == 400).all() and (table["n_blocks_eff"] <= table["n_blocks"]).all()
    assert table["verdict"].tolist() == ["helps", "no information", "helps"]
    assert ((table["ci_lo"] <= table["diff"]) & (table["diff"] <= table["ci_hi"])).all()
    assert table["a_mean"].tolist() == pytest.approx([0.0] * 3) and table["b_mean"].iloc[0] == pytest.approx(100.0)
    assert (table["n_seeds"] == 3).all() and table["p_holm"].iloc[1] == pytest.approx(1.0)
    assert (tmp_path / "results" / "x" / "verdict.csv").exists()
    from geomtl_core.compendium.tables import power_table

    power = power_table(table, "x", tmp_path)
    assert len(power) == 1 and power["mde (pooled)"].iloc[0] == pytest.approx(table["mde"].iloc[0], abs=0.01)
    assert power["mde (split)"].iloc[0] == pytest.approx(table["mde"].iloc[0], abs=0.01)  # no folds: the same
    _fake_experiment(tmp_path, "x", cells["s16"].name, NEAR, seeds=(5, 6))
    with pytest.raises(ValueError, match="no seed in common"):
        verdict_table("x", tmp_path, n_boot=100, pairs=pairs)


def _simulated_pair(rng: np.random.Generator, effect: float, n_seeds: int = 3, n_blocks: int = 60):
    """Errors of two arms on the same test images (S seeds each) with a block effect shared by both arms and a
    seed effect and a seed × block effect of each arm's own; ``effect``: the expected share of all images whose
    miss in arm B is turned into a hit, in a random half of the blocks. Returns (errors A, errors B, lat, lon)."""
    sizes = np.maximum(2, rng.lognormal(3.0, 0.8, n_blocks).astype(int))
    blocks = np.repeat(np.arange(n_blocks), sizes)
    lat = -60 + 5 * (blocks % 24) + 2.5
    lon = -175 + 5 * (blocks // 24) + 2.5
    u = rng.normal(0, 1.0, n_blocks)[blocks]

    def arm():
        logit = -0.5 + u + rng.normal(0, 0.15, (n_seeds, 1)) + rng.normal(0, 0.5, (n_seeds, n_blocks))[:, blocks]
        return rng.random(logit.shape) < 1 / (1 + np.exp(-logit))

    a, b = arm(), arm()
    chosen = np.isin(blocks, rng.choice(n_blocks, n_blocks // 2, replace=False))
    misses = ~b & chosen[None]
    q = min(1.0, effect * b.size / max(1, misses.sum()))
    b = b | (misses & (rng.random(b.shape) < q))
    return np.where(a, 100.0, 1000.0), np.where(b, 100.0, 1000.0), lat, lon


def test_stated_power_is_the_power_the_procedure_has():
    """Simulated paired studies (3 seeds, 60 uneven blocks, seed and seed × block variance as in the default run):
    with no effect the procedure rejects at about its level; with an effect equal to its stated minimum detectable
    effect (80% power) it rejects about 80% of the time. Catches a bootstrap that ignores seeds (its intervals
    are too narrow: the null is rejected far too often) and an mde formula off by a factor."""
    from geomtl_core.geo.protocol import minimum_detectable_effect
    from geomtl_core.geo.stats import paired_comparison

    def study(seed: int, effect: float):
        ea, eb, lat, lon = _simulated_pair(np.random.default_rng(seed), effect)
        c = paired_comparison(eb, ea, lat, lon, [200], n_boot=400, seed=seed)  # B − A
        return c.ci[0, 0] > 0 or c.ci[0, 1] < 0, float(c.se[0])

    null = [study(s, 0.0) for s in range(150)]
    mde = float(np.mean([minimum_detectable_effect(se) for _, se in null]))
    size = np.mean([r for r, _ in null])
    power = np.mean([study(1000 + s, mde)[0] for s in range(150)])
    assert size <= 0.11, f"type I error {size:.2f} at level 0.05"
    assert 0.65 <= power <= 0.93, f"power {power:.2f} at the stated mde ({100 * mde:.1f} points), expected 0.80"


def _fake_cv(root: Path, scale: str, name: str, shifts: dict[str, float], seeds=(0, 1, 2)):
    """A cross-validated fake experiment: fold "9" is the base split's runs, other folds ``<name>.k<j>`` runs on
    their own test images (other ids, the same places), each shifted by its fold's ``shifts``."""
    folds = {}
    for fold, shift in shifts.items():
        run = name if fold == "9" else f"{name}.k{fold}"
        _fake_experiment(root, scale, run, shift, seeds)
        if fold != "9":  # another fold tests other images: rename them
            for s in seeds:
                f = root / "runs" / scale / (run if s == seeds[0] else f"{run}.s{s}") / "predictions_test.csv"
                f.write_text(f.read_text().replace("\nimg", f"\nk{fold}img"))
        folds[fold] = {str(s): run if s == seeds[0] else f"{run}.s{s}" for s in seeds}
    path = root / "results" / scale / f"{name}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "folds": folds}))


def test_pooled_comparison_pairs_folds_and_nests_blocks_in_them(tmp_path):
    """The verdict over cross-validation folds: each fold's images paired by id, the folds pooled (A wins every
    image of fold 9 and none of fold 0: +50 points), blocks counted per fold (the same grid squares in two folds
    are two blocks each), n_folds in the row; a run without the folds is compared on the base split only.
    Catches pooled folds whose blocks are not nested (half the blocks) and a fold dropped from the pool."""
    _fake_cv(tmp_path, "x", "st_hier", {"9": FAR, "0": FAR})
    _fake_cv(tmp_path, "x", "mtl_s3", {"9": NEAR, "0": FAR})
    pooled = compare_runs("x", "mtl_s3", "st_hier", root=tmp_path, n_boot=300, pooled=True)
    base = compare_runs("x", "mtl_s3", "st_hier", root=tmp_path, n_boot=300)
    assert pooled.at(PRIMARY_KM)["diff"] == pytest.approx(50.0) and base.at(PRIMARY_KM)["diff"] == pytest.approx(100.0)
    assert pooled.n == 2 * base.n and pooled.n_blocks == 2 * base.n_blocks
    pair = [("mtl_vs_st", Cell("frozen", 1.0, "st"), Cell("frozen", 1.0, "s3"))]
    row = verdict_table("x", tmp_path, n_boot=300, pairs=pair).iloc[0]
    assert row["n_folds"] == 2 and row["n_images"] == 800 and row["diff"] == pytest.approx(50.0)
    _fake_experiment(tmp_path, "x", "mtl_s3", NEAR)  # no folds: the base split only
    row = verdict_table("x", tmp_path, n_boot=300, pairs=pair).iloc[0]
    assert row["n_folds"] == 1 and row["n_images"] == 400 and row["diff"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="no cross-validation fold in common"):
        compare_runs("x", "mtl_s3", "st_hier", root=tmp_path, pooled=True)


def test_variance_components_recover_known_components_and_project_like_the_plan():
    """Fold × seed differences drawn with a known between-fold variance (2) and within-fold seed variance (4):
    the method-of-moments components recover them on average, and projecting a planned standard error to
    another design gives the plan's own standard error there. Catches a swapped divisor (seeds vs folds)."""
    from geomtl_core.geo.protocol import planned_se, projected_se, variance_components

    rng = np.random.default_rng(0)
    comps = [variance_components(rng.normal(0, np.sqrt(2), (6, 1)) + rng.normal(0, 2, (6, 3))) for _ in range(3000)]
    assert abs(np.mean([c["within"] for c in comps]) - 4) < 0.1
    assert abs(np.mean([c["between"] for c in comps]) - 2) < 0.25  # the floor at 0 adds about +0.15
    se = planned_se(1.5, 2.5, 2.0, seeds=3, folds=6)
    assert projected_se(se, 4.0, 2.0, 3, 6, 5, 10) == pytest.approx(planned_se(1.5, 2.5, 2.0, seeds=5, folds=10))
    with pytest.raises(ValueError, match="folds × seeds"):
        variance_components([[1.0, 2.0]])


def _simulated_cv_pair(rng: np.random.Generator, effect: float, n_folds: int = 6, n_seeds: int = 3,
                       blocks_per_fold: int = 12, fold_sd: float = 0.35):
    """Errors of two arms cross-validated over ``n_folds`` folds (S seeds each, paired by seed and sharing its
    initialisation) whose difference carries a shift shared by a whole fold (logit sd ``fold_sd``: the fold's
    training set, a choice meeting that fold) besides block, seed and seed × block noise; ``effect``: the expected
    share of all images whose miss in B is turned into a hit. Returns (errors A, errors B, lat, lon, fold)."""
    sizes = np.maximum(3, rng.lognormal(2.8, 0.6, n_folds * blocks_per_fold).astype(int))
    blocks = np.repeat(np.arange(len(sizes)), sizes)
    fold = blocks // blocks_per_fold
    lat = -60 + 5 * (blocks % 24) + 2.5
    lon = -175 + 5 * ((blocks // 24) % 70) + 2.5
    base = -0.3 + rng.normal(0, 1.0, len(sizes))[blocks]
    init = rng.normal(0, 0.2, (n_seeds, 1))  # shared by both arms of a seed
    shift = rng.normal(0, fold_sd, n_folds)[fold]  # one shift per fold, in B − A

    def arm(extra):
        logit = base + init + extra + rng.normal(0, 0.3, (n_seeds, len(sizes)))[:, blocks]
        return rng.random(logit.shape) < 1 / (1 + np.exp(-logit))

    a, b = arm(0.0), arm(shift)
    misses = ~b
    b = b | (misses & (rng.random(b.shape) < min(1.0, effect * b.size / max(1, misses.sum()))))
    return np.where(a, 100.0, 1000.0), np.where(b, 100.0, 1000.0), lat, lon, fold


def test_the_cross_validated_procedure_has_its_stated_size_and_power_under_fold_shifts():
    """The procedure as the verdict runs it on a cross-validated row (folds pooled, arms paired by seed and sharing
    their initialisation), on studies whose difference carries a shift shared by each fold: with no effect it
    rejects at about its level (within a binomial band over 300 studies), with an effect equal to its stated mde
    (t quantiles, F − 1 df) about 80% of the time. Catches the earlier interval, a bootstrap of blocks pooled
    across folds, which ignores fold-level shifts (it rejects a true null about a fifth of the time here), and an
    mde that uses normal quantiles for a t over six folds (power well below 80%)."""
    from geomtl_core.geo.protocol import minimum_detectable_effect
    from geomtl_core.geo.stats import paired_comparison

    def study(seed: int, effect: float):
        ea, eb, lat, lon, fold = _simulated_cv_pair(np.random.default_rng(seed), effect)
        c = paired_comparison(eb, ea, lat, lon, [200], n_boot=100, seed=seed, groups=fold)  # B − A
        df = c.n_folds - 1 if c.interval == "fold t" else None
        return bool(c.ci[0, 0] > 0 or c.ci[0, 1] < 0), minimum_detectable_effect(float(c.se[0]), df=df)

    n = 300
    null = [study(s, 0.0) for s in range(n)]
    size = np.mean([r for r, _ in null])
    band = 2.6 * np.sqrt(0.05 * 0.95 / n)
    assert size <= 0.05 + band, f"type I error {size:.3f} at level 0.05 under fold shifts"
    mde = float(np.mean([m for _, m in null]))
    power = np.mean([study(10_000 + s, mde)[0] for s in range(n)])
    assert 0.8 - 0.1 <= power <= 0.8 + 0.1, f"power {power:.2f} at the stated mde ({100 * mde:.1f} points)"
