"""The README's answer is generated from the default build's files, never typed: its block between the markers
is what ``runner --readme`` writes from ``results/default/verdict.csv`` and the notebooks' run records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from geomtl_core.compendium.prose import README_END, README_START, readme_answer
from geomtl_core.compendium.runner import write_readme_answer

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


def _verdict() -> pd.DataFrame:
    rows = []
    for model, share, diff, word, role in (("frozen", 0.1, 0.42, "not resolved", "confirmatory"),
                                           ("frozen", 1.0, -1.37, "hurts", "confirmatory"),
                                           ("frozen", 0.3, 2.5, "helps", "exploratory")):
        rows.append({"comparison": "mtl_vs_st", "family": "confirmatory" if role == "confirmatory" else "secondary",
                     "role": role,
                     "model": model, "data_fraction": share, "a_mean": 30.0, "b_mean": 30.0 + diff, "diff": diff,
                     "ci_lo": diff - 0.9, "ci_hi": diff + 0.9, "mde": 1.9, "n_folds": 7, "interval": "fold t",
                     "verdict": word})
    rows.append(rows[-1] | {"comparison": "data_share_vs_smallest_share", "family": "positive_control", "diff": 1.38,
                            "ci_lo": -2.23, "ci_hi": 4.99, "verdict": "not resolved"})
    return pd.DataFrame(rows)


def test_the_answer_says_each_confirmatory_row_and_only_those(tmp_path):
    """Every confirmatory row's accuracies, difference, interval and word are in the block; exploratory rows are
    counted, not tabled; the build's time is the sum of its records. Catches a block that reads the wrong column
    or mixes exploratory rows into the answer."""
    block = readme_answer(_verdict(), [{"wall_time_s": 1800.0, "machine": "CPU X (2 cores)", "git_commit": "abc1234"},
                                       {"wall_time_s": 1200.0, "machine": "CPU X (2 cores)"}])
    assert "1 row hurts, 1 row not resolved" in block and "of 2 confirmatory rows" in block
    assert "+0.42 [-0.48, +1.32]" in block and "-1.37 [-2.27, -0.47]" in block and "31.37" not in block
    assert "+2.50" not in block and "2 more rows" in block
    assert "data-share control" in block and "+1.38 [-2.23, +4.99] points: not resolved" in block
    assert "ran 50 min on CPU X (2 cores)" in block and "abc1234" not in block


def test_runner_rewrites_only_the_block_and_refuses_without_markers(tmp_path):
    """The block between the markers is replaced, the rest of the README kept byte for byte; a README without
    markers or a scale without a verdict is refused with nothing written."""
    (tmp_path / "results" / "default").mkdir(parents=True)
    _verdict().to_csv(tmp_path / "results" / "default" / "verdict.csv", index=False)
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n\nbefore\n{README_START}\nold\n{README_END}\nafter\n")
    write_readme_answer(tmp_path)
    text = readme.read_text()
    assert text.startswith("# t\n\nbefore\n") and text.endswith(f"{README_END}\nafter\n") and "\nold\n" not in text
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        write_readme_answer(tmp_path)
    assert readme.read_text() == "no markers"
    shutil.rmtree(tmp_path / "results")
    readme.write_text(f"{README_START}\n{README_END}\n")
    with pytest.raises(ValueError, match="no verdict"):
        write_readme_answer(tmp_path)


@pytest.mark.skipif(not (REPO / "results" / "default" / "verdict.csv").exists(),
                    reason="no committed default build (results/default/verdict.csv)")
def test_the_readme_quotes_the_committed_default_build():
    """The answer of the README and of the book's first page equals what the committed default build's files say
    (``runner --readme``). Catches a number edited by hand or a page left behind a new build."""
    verdict = pd.read_csv(REPO / "results" / "default" / "verdict.csv")
    records = [json.loads(f.read_text()) for f in sorted((REPO / "book" / "experiments").glob("*.run.json"))]
    for page in ("README.md", "book/intro.md"):
        text = (REPO / page).read_text()
        block = text.split(README_START, 1)[1].split(README_END, 1)[0].strip()
        assert block == readme_answer(verdict, records), page
