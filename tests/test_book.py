"""The report: every notebook runs at smoke scale through the runner, and the book builds with
warnings as errors, every figure present."""

import json
import subprocess
import sys
from pathlib import Path

from geomtl_core.compendium.runner import ROOT, run_all

import pytest

EXPECTED_FIGURES = {"01_data": 5, "02_partitioning": 4, "04_single_task": 2, "05_multitask": 1, "07_summary": 2}


@pytest.mark.slow
def test_smoke_book_runs_and_builds(tmp_path):
    """Runner at smoke scale (records written, second pass skips), then jupyter-book -W.

    Built in a copy of book/, so a user's default-scale report is never overwritten by the test.
    """
    import shutil

    book = tmp_path / "book"
    shutil.copytree(ROOT / "book", book, symlinks=False, ignore=shutil.ignore_patterns("_build", "experiments"))
    out = book / "experiments"
    records = run_all("smoke", ROOT / "notebooks", out)
    assert len(records) == 7
    for r in records:
        assert {"git_commit", "versions", "parameters"} <= set(r) and r["parameters"] == {"scale": "smoke"}
    again = run_all("smoke", ROOT / "notebooks", out)
    assert all(r.get("skipped") for r in again)
    build = subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", str(book), "-W",
                            "--keep-going"], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    html = book / "_build" / "html"
    assert (html / "index.html").exists()
    for name, n in EXPECTED_FIGURES.items():
        page = (html / "experiments" / f"{name}.html").read_text()
        assert page.count("<img") >= n, name
        assert "Traceback" not in page
    summary = json.loads((out / "07_summary.run.json").read_text())
    assert summary["wall_time_s"] > 0


def test_runner_rejects_unknown_scale(tmp_path):
    """A typo in the scale is an error listing the valid ones."""
    with pytest.raises(ValueError, match="smoke, default, full"):
        run_all("huge", ROOT / "notebooks", tmp_path)
