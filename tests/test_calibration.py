"""Calibration on real runs (chapter 05): an A/A row from arms that differ only in their seeds, and injected
effects of known size, each decided by the fold-level procedure."""

from geomtl_core.compendium.calibration import calibrate
from geomtl_core.compendium.prose import calibration_words

import numpy as np
import pytest


def _runs(rng: np.random.Generator, n_folds: int = 6, n_seeds: int = 3, per_fold: int = 400) -> tuple:
    """Hits of S seeds of one arm on the test images of F folds: place, fold, seed and seed × fold noise."""
    folds = np.repeat(np.arange(n_folds), per_fold)
    logit = (-0.4 + rng.normal(0, 1, folds.size) + rng.normal(0, 0.3, (n_seeds, 1))
             + rng.normal(0, 0.3, (n_seeds, n_folds))[:, folds])
    return (rng.random(logit.shape) < 1 / (1 + np.exp(-logit))).astype(float), folds


def test_the_a_a_row_is_decided_at_about_the_level_and_injections_have_their_size():
    """Over many sets of runs the A/A row (seed against another seed of the same fold) is decided "helps" or
    "hurts" at about the 5% level, never 0% (the arms really differ), and an injected effect comes out at its
    size on average. Catches an A/A row that pairs a seed with itself (decided never: the procedure looks
    perfect), a one-sided injection count, and an injection off by a factor of 100."""
    rng = np.random.default_rng(1)
    decided, estimates = [], []
    for k in range(30):
        hits, folds = _runs(rng)
        cal = calibrate(hits, folds, effects=(0.0, 3.0), draws=40, seed=k)
        decided.append(cal.loc[0.0, "helps %"] + cal.loc[0.0, "hurts %"])
        estimates.append(cal.loc[3.0, "mean estimate (points)"])
    assert 1.0 <= np.mean(decided) <= 9.0, f"A/A decided in {np.mean(decided):.1f}% of draws at level 5%"
    assert np.mean(estimates) == pytest.approx(3.0, abs=0.3)


def test_calibration_needs_two_seeds_and_says_why_in_words():
    """One seed cannot make two arms that differ only in their seeds: refused; the chapter's words name the
    reason of an empty table and otherwise the A/A rate and each injected effect's detection rate."""
    hits, folds = _runs(np.random.default_rng(0), n_seeds=1)
    with pytest.raises(ValueError, match="two seeds"):
        calibrate(hits, folds)
    import pandas as pd

    empty = pd.DataFrame(columns=["draws", "helps %", "hurts %", "mean estimate (points)"])
    empty.attrs["reason"] = "st_hier runs 1 seed(s) on 2 fold(s)"
    assert "No calibration at this scale: st_hier runs 1 seed" in calibration_words(empty)
    cal = calibrate(*_runs(np.random.default_rng(0)), effects=(0.0, 1.5), draws=20)
    cal.attrs["cell"] = "st_hier"
    words = calibration_words(cal)
    assert "`st_hier`" in words and "1.5 points in" in words and "20 draws" in words
