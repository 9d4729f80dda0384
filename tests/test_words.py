"""The book's generated words (issue 36): counts agree with their nouns, f* survives markdown, no "nan" or "None"
stands for a number, and a row without information is not called "equivalent"."""

from geomtl_core.compendium import paper_claims, prose, tables
from geomtl_core.compendium.verdict import decide
from geomtl_core.geo.protocol import NO_INFORMATION, PRIMARY_KM, dash, escape_markdown, plural, verdict_word
from geomtl_core.geo.stats import PairedComparison

import numpy as np
import pandas as pd


def test_plural_agrees_with_the_count():
    """Catches "1 seeds" / "2 seed" and an irregular plural ignored."""
    assert [plural(n, "seed") for n in (0, 1, 2)] == ["0 seeds", "1 seed", "2 seeds"]
    assert plural(1, "run") == "1 run" and plural(1, "fold") == "1 fold" and plural(1, "file") == "1 file"
    assert plural(3, "spatial block") == "3 spatial blocks" and plural(2, "person", "people") == "2 people"


def test_dash_stands_for_a_missing_number():
    """None and NaN (float or numpy) read "—"; a number is formatted. Catches "nan" / "None" in the book."""
    assert dash(None) == dash(float("nan"), ".2f") == dash(np.float64("nan"), ".1f") == "—"
    assert dash(0.125, ".2f") == "0.12" and dash(np.float32(2.0), ".1f") == "2.0" and dash(3) == "3"


def test_escape_markdown_keeps_f_star_a_star():
    """A ``*`` in text placed into markdown is escaped, so "**f* against …**" does not become emphasis."""
    assert escape_markdown("f* against the fine head") == r"f\* against the fine head"
    assert escape_markdown("st_hier") == "st_hier"


def _comparison(n_seeds: int, n_blocks: int) -> PairedComparison:
    t = [PRIMARY_KM]
    one = np.array([1.0])
    return PairedComparison(thresholds_km=t, n=10, n_blocks=n_blocks, block_deg=5.0, acc_a=one, acc_b=one,
                            diff=one, ci=np.array([[0.5, 1.5]]), p=np.array([0.01]), p_holm=np.array([0.01]),
                            n_seeds=n_seeds)


def test_the_difference_sentence_counts_and_escapes():
    """Catches "(2 seeds, 1 blocks)" and an unescaped f* in the sentence the book shows as markdown."""
    text = prose.describe_difference(_comparison(2, 1), "f* in the same model", "the fine head (cells_5_100)")
    assert "(2 seeds, 1 block)" in text and r"f\* in the same model − the fine head" in text
    assert "(7 blocks)" in prose.describe_difference(_comparison(1, 7), "a", "b")


def test_the_paper_claims_summary_counts_seeds_and_escapes_the_claim():
    """One seed reads "over 1 seed"; the bold claim's f* is escaped. Catches "1 seeds" and "**f* …**"."""
    row = {"claim": "f* against the fine head", "endpoint": f"acc_{PRIMARY_KM}km", "diff": 1.0, "ci_lo": -1.0,
           "ci_hi": 3.0, "p_holm": 0.5, "n_seeds": 1, "paper_diff": np.nan, "paper_ci_lo": np.nan,
           "paper_ci_hi": np.nan}
    text = paper_claims.summary(pd.DataFrame([row]))
    assert "over 1 seed;" in text and r"**f\* against the fine head**" in text


def test_a_zero_width_interval_is_no_information_not_equivalent():
    """Both arms hit the same very few images: every resample's difference is 0, the interval [0, 0]. That is no
    information, not equivalence; a constant difference that resolves still helps, a narrow interval inside the
    margin is still equivalent. Catches a degenerate row counted as "equivalent" in the verdict."""
    assert verdict_word(0.0, 0.0, 1.0) == NO_INFORMATION
    assert verdict_word(100.0, 100.0, 0.0) == "helps"
    assert verdict_word(-0.5, 0.5, 0.9) == "equivalent"
    rows = pd.DataFrame([{"comparison": "c0", "diff": 0.0, "ci_lo": 0.0, "ci_hi": 0.0, "p": 1.0},
                         {"comparison": "c1", "diff": 0.1, "ci_lo": -0.4, "ci_hi": 0.6, "p": 0.7}])
    table = decide(rows)
    assert table["verdict"].tolist() == [NO_INFORMATION, "equivalent"]
    assert prose.tally(table) == "0 helps, 0 hurts, 1 equivalent, 0 not resolved, 1 no information of 2"
    assert prose.tally(table.iloc[1:]) == "0 helps, 0 hurts, 1 equivalent, 0 not resolved of 1"


def test_the_calibration_table_shows_a_dash_where_the_gap_is_undefined():
    """The prior equal to the ceiling: the model's share of the gap is undefined and reads "—", never "nan"."""
    thresholds = (1, 25, 200, 750, 2500)
    idx = pd.MultiIndex.from_tuples([("p", "prior"), ("p", "nearest-cell-mean oracle")])
    base = pd.DataFrame([{f"{t} km": 10.0 for t in thresholds}, {f"{t} km": 10.0 for t in thresholds}], index=idx)
    result = {"test": {"best": "hierarchy", "methods": {"hierarchy": {f"acc_{t}km": 0.2 for t in thresholds}}}}
    text = tables.calibration_statement(result, base, "p")
    assert "nan" not in text.lower() and "| 200 km | 10.0 | 20.0 | 10.0 | — |" in text
