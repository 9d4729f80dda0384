"""Every figure of the report can be read where the book shows it: its smallest text is at least
``plots.MIN_TEXT_PX`` px once the figure is scaled into the content column (``plots.BOOK_WIDTH_PX``), and the
answer figure of the book's first page is written where the intro links it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from geomtl_core.compendium import plots, proxy_plots
from geomtl_core.data.predictions import write_predictions

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

REPO = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)
# labels as long as the book's (run names, grid rows, model names), so widths are tried as the book has them
ROWS = ["mtl_vs_st · cnn_w25 · 100% · s3", "geographic_control_vs_st · frozen · 10% · geographic_s3",
        "data_share_vs_smallest_share · frozen · 100% · st", "hybrid_vs_fstar · frozen · s3 · 10%"]
MODELS = ["small CNN ×0.25 from scratch", "efficientnet_lite0 (ImageNet), frozen",
          "efficientnet_lite0 (ImageNet), last 2 blocks tuned"]


def _predictions(path: Path, n: int = 400) -> Path:
    lat, lon = RNG.uniform(-60, 70, n), RNG.uniform(-180, 180, n)
    return write_predictions(path, np.arange(n), lat, lon, np.clip(lat + RNG.normal(0, 8, n), -90, 90),
                             (lon + RNG.normal(0, 8, n) + 180) % 360 - 180)


def _history(path: Path, epochs: int = 6) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    loss = 5 - np.log1p(np.arange(epochs))
    pd.DataFrame({"epoch": np.arange(epochs), "loss": loss, "val_loss": loss + 0.3}).to_csv(path, index=False)
    return path


def _intervals() -> pd.DataFrame:
    diff = RNG.normal(0, 2, len(ROWS))
    return pd.DataFrame({"label": ROWS, "diff": diff, "ci_lo": diff - 1.5, "ci_hi": diff + 1.5,
                         "paper_diff": [0.8, np.nan, 1.0, np.nan]})


def _verdict() -> pd.DataFrame:
    rows = [("cnn_w25", 1.0, -0.06, 3.66, "not resolved"), ("frozen", 0.1, 0.08, 0.42, "equivalent"),
            ("frozen", 1.0, 2.2, 0.6, "helps")]
    return pd.DataFrame([{"role": "confirmatory", "family": "confirmatory", "model": m, "data_fraction": f, "diff": d,
                          "ci_lo": d - h, "ci_hi": d + h, "equiv_margin": 1.0, "interval": "fold t", "verdict": w}
                         for m, f, d, h, w in rows] + [{"role": "exploratory", "family": "secondary", "model": "tuned",
                                                       "data_fraction": 1.0, "diff": 9.0, "ci_lo": 8.0, "ci_hi": 10.0,
                                                       "equiv_margin": 1.0, "interval": "fold t", "verdict": "helps"}])


def _power() -> pd.DataFrame:
    rows = [{"family": fam, "model": m, "share": s, "b": b, "± (split)": 3.0, "± (pooled)": 1.2, "mde (split)": 4.0,
             "mde (pooled)": 1.6} for fam, m, s, b in (("confirmatory", "cnn_w25", "100%", "cnn_w25-f100-s3"),
                                                      ("confirmatory", "frozen", "10%", "frozen-f010-s3"),
                                                      ("positive_control", "frozen", "100%", "st_hier"))]
    return pd.DataFrame(rows).set_index(["family", "model", "share"])


def _cost() -> pd.DataFrame:
    rows = []
    for k, (model, method, share) in enumerate([(m, meth, s) for m in MODELS for meth in ("f*", "knn", "hybrid")
                                                for s in ("10%", "100%")]):
        acc = 15 + k % 7
        rows.append({"model": model, "share": share, "method": method, f"acc {plots.PRIMARY_KM} km %": acc,
                     "ci95 low": acc - 1, "ci95 high": acc + 1, "train time (s)": 10.0 * (1 + k)})
    table = pd.DataFrame(rows)
    return table.assign(pareto=table.index % 5 == 0)


def _results() -> dict[str, dict]:
    def run() -> dict:
        m = {f"acc_{t}km": 0.1 + t / 5000 for t in plots.THRESHOLDS_KM}
        m |= {f"acc_{t}km_ci95": [m[f"acc_{t}km"] - 0.02, m[f"acc_{t}km"] + 0.02] for t in plots.THRESHOLDS_KM}
        return {"test": {"methods": {"hierarchy": m}, "best": "hierarchy"}}

    return {"st_hier": run(), "mtl_s3": run(), "isn_scratch_s3": run()}


def _meta(n: int = 60) -> pd.DataFrame:
    return pd.DataFrame({"img_id": [f"i{k}" for k in range(n)], "lat": RNG.uniform(-50, 60, n),
                         "lon": RNG.uniform(-170, 170, n), "split": RNG.choice(["train", "val", "test"], n),
                         "igbp": RNG.integers(0, 17, n), "group": RNG.integers(0, 3, n),
                         "koppen": RNG.integers(0, 6, n)})


def _nearest_train(tmp: Path) -> Figure:
    meta = _meta(80)
    for j in (0, 1):
        for split, part in (("train", meta.iloc[j::2]), ("test", meta.iloc[1 - j::2])):
            (tmp / "folds" / f"k{j}").mkdir(parents=True, exist_ok=True)
            part[["img_id", "lat", "lon"]].to_csv(tmp / "folds" / f"k{j}" / f"{split}.csv", index=False)
    return proxy_plots.plot_nearest_train(tmp, [0, 1])


def _arm_curves(tmp: Path) -> Figure:
    for arm in ("frozen-f100-st-e12", "frozen-f100-s3-e12-w0.3", "tuned-f100-s3-e20-w1.0"):
        _history(tmp / "runs" / "x" / "arms" / arm / "history.csv")
    return plots.arm_curves("x", tmp)


FIGURES: dict[str, Callable[[Path], Figure]] = {
    "accuracy_vs_distance": lambda tmp: plots.accuracy_vs_distance(
        {name: _predictions(tmp / f"{name}.csv") for name in ("st_fine", "st_hier", "mtl_s3", "isn_scratch_s3")}),
    "accuracy_with_ci": lambda tmp: plots.accuracy_with_ci(_results()),
    "arm_curves": _arm_curves,
    "training_curves": lambda tmp: plots.training_curves(
        {name: _history(tmp / name / "history.csv") for name in ("st_hier", "mtl_s3", "mtl_s16")}),
    "error_map": lambda tmp: plots.error_map(_predictions(tmp / "p.csv"), "test errors of isn_s3_true"),
    "label_distribution": lambda tmp: plots.label_distribution(
        _meta(), "igbp", [f"IGBP class {k} with a long name" for k in range(17)], "IGBP land cover (17 classes)"),
    "cells_vs_tau": lambda tmp: plots.cells_vs_tau(pd.DataFrame({"tau_max": [100, 300, 1000, 3000],
                                                                 "classes": [900, 300, 90, 30]})),
    "difference_intervals": lambda tmp: plots.difference_intervals(_intervals(), label="label", paper="paper_diff"),
    "power_before_after": lambda tmp: plots.power_before_after(_power(), margin=1.0),
    "accuracy_cost": lambda tmp: plots.accuracy_cost(_cost()),
    "confirmatory_answer": lambda tmp: plots.confirmatory_answer(_verdict()),
    "plot_samples": lambda tmp: proxy_plots.plot_samples(RNG.integers(0, 255, (7, 16, 16, 3), dtype=np.uint8),
                                                         _meta(7), title="test images"),
    "plot_split_map": lambda tmp: proxy_plots.plot_split_map(_meta()[["lat", "lon", "split"]]),
    "plot_nearest_train": _nearest_train,
}


@pytest.mark.parametrize("name", FIGURES)
def test_every_text_of_every_figure_is_legible_in_the_books_column(name, tmp_path):
    """Catches a figure whose tick labels, legend, title or annotations shrink below 10 px in the book: a small
    font (a legend at 7 points) or a figure made wider (a 9-inch figure is scaled down to the 676 px column)."""
    fig = FIGURES[name](tmp_path)
    assert fig is not None
    assert plots.smallest_text_px(fig) >= plots.MIN_TEXT_PX


def test_the_measure_is_the_books_scaling_of_the_smallest_shown_text():
    """A wide figure is scaled down to the column, a narrow one shown at its own 100 dpi; hidden and empty texts
    and the tick labels of an axes switched off do not count. Catches a measure that reads the wrong width."""
    wide = Figure(figsize=(10, 2))
    ax = wide.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.text(0.5, 0.5, "seven points", fontsize=7)
    ax.text(0.5, 0.2, "hidden", fontsize=1, visible=False)
    ax.text(0.5, 0.1, "", fontsize=1)
    assert plots.smallest_text_px(wide) == pytest.approx(7 * plots.BOOK_WIDTH_PX / (10.2 * 72), rel=0.01)
    narrow = Figure(figsize=(4, 2))
    narrow.add_axes((0, 0, 1, 1)).set_axis_off()
    narrow.text(0.5, 0.5, "seven points", fontsize=7)
    assert plots.smallest_text_px(narrow) == pytest.approx(7 * 100 / 72)


def test_the_answer_figure_draws_the_confirmatory_rows_only(tmp_path):
    """One row per confirmatory row, its word beside it; written as a modest PNG. Catches an answer figure that
    draws the exploratory rows (the one here says "helps" at +9 points) or none."""
    from PIL import Image

    fig = plots.confirmatory_answer(_verdict())
    (ax,) = fig.axes
    assert len(ax.get_yticks()) == 3
    words = [t.get_text().split("\n")[0] for t in ax.texts]
    assert words == ["not resolved", "equivalent", "helps"]
    with pytest.raises(ValueError, match="confirmatory"):
        plots.confirmatory_answer(_verdict().query("role != 'confirmatory'"))
    png = plots.save_figure(fig, tmp_path / "figures" / "answer.png")
    assert Image.open(png).width <= plots.BOOK_WIDTH_PX + 50


def test_the_intro_shows_the_committed_answer_figure():
    """The book's first page links the figure right after its generated answer block, and the figure is there
    (written by chapter 05); catches a broken link or an image .gitignore would leave out."""
    import subprocess

    intro = (REPO / "book" / "intro.md").read_text()
    after = intro.split("<!-- answer:end -->", 1)[1].lstrip()
    assert after.startswith("![") and "(figures/answer.png)" in after.splitlines()[0]
    assert (REPO / "book" / "figures" / "answer.png").is_file()
    ignored = subprocess.run(["git", "check-ignore", "-q", "book/figures/answer.png"], cwd=REPO)
    assert ignored.returncode != 0, "book/figures/answer.png is ignored by .gitignore"
