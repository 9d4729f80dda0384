"""``runner --dry-run`` plans the book's runs and writes nothing: no proxy export, no folds, no result."""

from pathlib import Path

from geomtl_core.compendium import grid, paper_claims, plan
from geomtl_core.compendium import provision as P
from geomtl_core.compendium.runner import main

import pytest


def _project(path: Path) -> Path:
    """A fresh project root: ``_config.yml`` and ``notebooks/``, no data, runs or results."""
    (path / "notebooks").mkdir(parents=True)
    (path / "_config.yml").write_text("title: fresh\n")
    return path


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` (hidden ones too) with its size and modification time."""
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_the_dry_run_on_a_fresh_root_writes_nothing_and_says_its_sizes_are_estimated(tmp_path, monkeypatch, capsys):
    """The smoke scale's dry run on a root with no proxy export prints a plan, says nothing was written and that the
    export's sizes were estimated, and leaves the root as it was; the functions it swapped are restored. Catches a
    plan that exports the proxy (2 min and 191 MB at the default scale) or writes its folds, and a root ignored
    for the working directory's (run here from outside any project)."""
    root = _project(tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    originals = (P.ensure_folds, P.ensure_proxy, grid.steps_budget, paper_claims.isn_shares)
    before = _listing(root)
    assert main(["--scale", "smoke", "--dry-run", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert _listing(root) == before and not any(elsewhere.iterdir())
    assert "runs planned, 0 cached" in out and "nothing written" in out
    assert "estimated without the proxy export" in out and "training time" in out
    assert (P.ensure_folds, P.ensure_proxy, grid.steps_budget, paper_claims.isn_shares) == originals


def test_estimated_sizes_are_the_exports_and_a_plan_on_the_export_writes_no_folds(tmp_path):
    """The sizes computed without the export (training images, scene shares, folds) are those read from it once it
    is exported, and a plan on the export writes nothing either (no ``folds/``). Catches an estimate that drifts
    from what the export splits, and a plan that writes the cross-validation folds."""
    root = _project(tmp_path / "project")
    computed = P.export_sizes("smoke", root)
    assert computed.source == "computed" and computed.train_images > 0
    P.ensure_proxy("smoke", root, progress=False)
    read = P.export_sizes("smoke", root)
    assert read.source == "export"
    assert (read.train_images, read.k) == (computed.train_images, computed.k)
    assert read.isn_shares.keys() == computed.isn_shares.keys()
    assert all(abs(read.isn_shares[c] - computed.isn_shares[c]) < 1e-12 for c in read.isn_shares)
    before = _listing(root)
    table = plan.plan("smoke", root)
    assert _listing(root) == before and not (P.data_dir("smoke", root) / "folds").exists()
    assert table.attrs["sizes"]["source"] == "export" and len(table) > 0 and not table["cached"].any()


def test_the_plan_on_two_processes_uses_their_measured_wall_ratio():
    """On 2 local processes the plan scales what can run in parallel by the measured wall ratio of 2 processes on
    this CPU (``measured.json``, about 0.78), not by one half; the recipe's runs, which come first, are not shared
    out; an unmeasured count falls back to workers of the same speed. Catches a dry run that halves the time on 2
    cores (it once said 0.5x where the benchmark measured 0.76-0.79x)."""
    assert plan.WALL_RATIO[2] > 0.5
    assert plan.parallel_s(1000.0, 100.0, 1) == 1000.0
    assert plan.parallel_s(1000.0, 100.0, 2) == pytest.approx(100.0 + 900.0 * plan.WALL_RATIO[2])
    assert plan.parallel_s(1000.0, 100.0, 7) == pytest.approx(100.0 + 900.0 / 7)
