"""The report: every notebook runs at smoke scale through the runner, and the book builds with
warnings as errors, every figure present."""

import json
import subprocess
import sys
from pathlib import Path

from geomtl_core.compendium.project import ROOT
from geomtl_core.compendium.runner import prepare_book, report_problems, run_all

import nbformat
import pandas as pd
import pytest

EXPECTED_FIGURES = {"01_data": 6, "02_partitioning": 4, "04_single_task": 3, "05_multitask": 5, "06_ablations": 1,
                    "07_retrieval": 2, "08_summary": 2}


@pytest.mark.slow
def test_smoke_book_runs_and_builds(tmp_path):
    """Runner at smoke scale (records written, second pass skips), then jupyter-book -W; every page carries the
    smoke banner, and the smoke models learn (above the prior at 750 and 2500 km, comparisons not all zero).

    Built in the smoke book's copy of book/ (as `make book SCALE=smoke` does), here in a temporary folder.
    """
    book = prepare_book("smoke", ROOT, tmp_path / "book")
    out = book / "experiments"
    records = run_all("smoke", ROOT / "notebooks", out)
    assert len(records) == 8
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
    for page in (p for p in html.rglob("*.html") if "_static" not in p.parts):
        text = page.read_text()
        assert "Built at the <b>smoke</b> scale" in text or 'http-equiv="Refresh"' in text, page.name
    summary = json.loads((out / "08_summary.run.json").read_text())
    assert summary["wall_time_s"] > 0
    for executed in sorted(out.glob("*.ipynb")):  # what the reader sees: no progress output, no machine paths
        assert report_problems(nbformat.read(executed, as_version=4), ROOT) == [], executed.name
    for name in ("verdict.csv", "paper_trends.csv", "methods.csv"):  # generated files of the grid, claims, methods
        table = pd.read_csv(ROOT / "results" / "smoke" / name)
        assert len(table) > 0 and table["diff"].notna().all()
        assert ((table["ci_lo"] <= table["diff"] + 1e-9) & (table["diff"] <= table["ci_hi"] + 1e-9)).all()
    verdict = pd.read_csv(ROOT / "results" / "smoke" / "verdict.csv")
    # comparisons that can show (a run compared with itself gives none); paired arms of one seed often agree
    # on every smoke test image, so not every row moves
    assert ((verdict["ci_hi"] - verdict["ci_lo"]) > 0).sum() >= 3 and (verdict["diff"] != 0).sum() >= 3
    assert (verdict["n_folds"] == 2).sum() >= 3  # the cross-validated rows pool the smoke scale's two folds
    from geomtl_core.compendium.plan import plan  # the dry run's plan is what the book trained, nothing more

    planned = plan("smoke", ROOT)
    assert planned["cached"].all() and not planned["provisional"].any(), planned[~planned["cached"]]["run"].tolist()
    runs = ROOT / "runs" / "smoke"
    trained = {str(f.parent.relative_to(runs)) for f in (*runs.rglob("model.keras"), *runs.rglob("heads.npz"))}
    assert set(planned["run"]) <= trained and len(planned) == planned["run"].nunique()
    prior = json.loads((ROOT / "results" / "smoke" / "baselines" / "baselines.json").read_text())
    prior = prior["baselines"]["prior (most populated cell)"]
    for run in ("st_hier", "mtl_s3", "tuned-f100-st", "cnn_w25-f100-st"):  # every kind of model learns
        acc = json.loads((ROOT / "results" / "smoke" / f"{run}.json").read_text())["seed_summary"]
        for t in (750, 2500):
            assert acc[f"acc_{t}km"]["mean"] > prior[f"acc_{t}km"], (run, t)


def test_report_problems_flags_progress_bars_and_absolute_paths():
    """The check the runner applies to every executed notebook fails on a progbar, a tqdm bar, a path."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x")]
    clean = [nbformat.v4.new_output("stream", name="stdout", text="scale=smoke: data in data/proxy/ (project)\n")]
    nb.cells[0].outputs = clean
    assert report_problems(nb, ROOT) == []
    for text in ("\x1b[1m 3/10\x1b[0m ━━━━━━━━━━━━ 1s 20ms/step\n", "predict:  40%|████      | 4/10 [00:01<00:02]\n",
                 "Epoch 1/3\n", f"saved to {ROOT}/runs/x\n", "cache at /tmp/abc/features.npz\n"):
        nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
        assert report_problems(nb, ROOT), text
    nb.cells[0].outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "/home/me/geomtl"})]
    assert report_problems(nb) != []


def test_runner_rejects_unknown_scale(tmp_path):
    """A typo in the scale is an error listing the valid ones."""
    with pytest.raises(ValueError, match="smoke, default, full"):
        run_all("huge", ROOT / "notebooks", tmp_path)
