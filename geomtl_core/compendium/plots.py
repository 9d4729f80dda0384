"""Figures of the report: accuracy-vs-distance curves, accuracies with confidence intervals,
training curves, error maps, label distributions and the confirmatory answer. Each returns a matplotlib figure,
drawn in :data:`BOOK_STYLE` and sized so that its smallest text is at least :data:`MIN_TEXT_PX` where the book
shows it (:func:`smallest_text_px`)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ParamSpec

from geomtl_core.compendium.design import model_label
from geomtl_core.data.predictions import read_predictions
from geomtl_core.geo.protocol import PRIMARY_KM, THRESHOLDS_KM, direction

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.text import Text

BOOK_WIDTH_PX = 676
"""Width (CSS px) of the book's content column at a 1280 px wide window, where a figure is shown: measured in the
built report (sphinx-book-theme; the article column is 740 px, less 2 × 32 px of padding). An image wider than
this is scaled down to it, a narrower one shown at its own size."""

MIN_TEXT_PX = 10.0
"""The smallest text (px, at :data:`BOOK_WIDTH_PX`) a figure of the report may show."""

BOOK_STYLE = {"font.size": 9, "axes.titlesize": 10.5, "axes.labelsize": 9.5, "xtick.labelsize": 9,
              "ytick.labelsize": 9, "legend.fontsize": 9, "legend.title_fontsize": 9, "figure.titlesize": 10.5}
"""Font sizes (points) of the report's figures: 9 points on a figure at most about 8 inches wide is ≥ 10 px in the
book's column (:func:`smallest_text_px`); matplotlib's defaults are for a figure shown at its own size."""

P = ParamSpec("P")


def _shown_texts(artist: Artist) -> Iterator[Text]:
    """The non-empty texts under ``artist`` that a draw shows: visible along the whole path from the figure
    (an invisible axis hides its tick labels), and no axis of an axes switched off."""
    for child in artist.get_children():
        if not child.get_visible() or (isinstance(child, Axis) and not child.axes.axison):
            continue
        if isinstance(child, Text) and child.get_text().strip():
            yield child
        yield from _shown_texts(child)


def smallest_text_px(fig: Figure, width_px: float = BOOK_WIDTH_PX) -> float:
    """Size (px) of ``fig``'s smallest shown text as the book shows it: saved as the notebooks' inline backend
    and :func:`save_figure` save it (the tight bounding box plus its padding, at the figure's dpi), then scaled
    down to ``width_px`` when wider. ``inf`` for a figure without text."""
    fig.draw_without_rendering()  # tick labels get their text on a draw
    width_in = fig.get_tightbbox().width + 2 * plt.rcParams["savefig.pad_inches"]
    px_per_point = min(fig.dpi, width_px / width_in) / 72
    return min((t.get_fontsize() * px_per_point for t in _shown_texts(fig)), default=math.inf)


def _book_figure(make: Callable[P, Figure | None]) -> Callable[P, Figure | None]:
    """Make (and draw once, so that every tick label exists) the figure in :data:`BOOK_STYLE`."""

    @functools.wraps(make)
    def styled(*args: P.args, **kwargs: P.kwargs) -> Figure | None:
        with plt.rc_context(BOOK_STYLE):
            fig = make(*args, **kwargs)
            if fig is not None:
                fig.draw_without_rendering()
        return fig

    return styled


def save_figure(fig: Figure, path: str | Path, dpi: float = 100) -> Path:
    """Write ``fig`` as a PNG for a page of the book (not a notebook's output): as the notebooks show a figure
    (tight box, the figure's 100 dpi, so :func:`smallest_text_px` holds for it too), without the matplotlib
    version in its metadata, so that a rebuild with the same numbers writes the same bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return path


@_book_figure
def accuracy_vs_distance(pred_csvs: dict[str, str | Path], title: str = "accuracy vs distance"):
    """Share of test images within d km, for d from 1 to 20,000 km (log axis), one curve per run."""
    d = np.logspace(0, np.log10(20_016), 300)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, path in pred_csvs.items():
        err = np.sort(read_predictions(path).errors_km)
        ax.plot(d, np.searchsorted(err, d, side="right") / len(err), label=name, lw=1.6)
    for t in THRESHOLDS_KM:
        ax.axvline(t, color="0.85", lw=0.8, zorder=0)
    ax.set(xscale="log", xlabel="great-circle distance d (km)", ylabel="share of images within d", ylim=(0, 1),
           title=title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    plt.close(fig)
    return fig


@_book_figure
def accuracy_with_ci(results: dict[str, dict], names: list[str] | None = None, split: str = "test",
                     title: str = "accuracy with 95% bootstrap intervals"):
    """Accuracy at each threshold with its 95% CI, runs side by side (dodged points with error bars)."""
    names = names or list(results)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    x = np.arange(len(THRESHOLDS_KM))
    width = 0.8 / max(1, len(names))
    for k, name in enumerate(names):
        res = results[name][split]
        m = res["methods"][res["best"]]
        acc = np.array([m[f"acc_{t}km"] for t in THRESHOLDS_KM])
        ci = np.array([m[f"acc_{t}km_ci95"] for t in THRESHOLDS_KM])
        pos = x - 0.4 + width * (k + 0.5)
        ax.errorbar(pos, 100 * acc, yerr=100 * np.abs(ci.T - acc), fmt="o", ms=4, capsize=2, label=name)
    ax.set_xticks(x, [f"{t} km" for t in THRESHOLDS_KM])
    ax.set(ylabel="accuracy (%)", title=title)
    ax.legend()
    ax.grid(axis="y", color="0.9")
    fig.tight_layout()
    plt.close(fig)
    return fig


@_book_figure
def arm_curves(scale: str, root: Path | None = None):
    """Training and validation loss of the longest candidate of each learning arm (and scene weight) that
    :func:`geomtl_core.compendium.grid.arm_overrides` trained; ``None`` when the scale chooses none."""
    from geomtl_core.compendium.project import find_root

    longest: dict[tuple[str, str], tuple[int, Path]] = {}
    for h in sorted((Path(root or find_root()) / "runs" / scale / "arms").glob("*/history.csv")):
        cell, _, rest = h.parent.name.rpartition("-e")
        epochs, _, weight = rest.partition("-w")
        if int(epochs) >= longest.get((cell, weight), (0, h))[0]:
            longest[cell, weight] = (int(epochs), h)
    if not longest:
        return None
    return training_curves({cell + (f" (scene weight {w})" if w else ""): h for (cell, w), (_, h) in longest.items()},
                           "loss", title="loss of each learning arm's longest candidate: training (solid), "
                                         "validation (dashed)")


@_book_figure
def training_curves(histories: dict[str, str | Path], metric: str = "loss", title: str | None = None):
    """A metric of the training log per epoch, one colour per run: training solid, validation dashed
    (where the training budget is read off); the legend under the axes, training in its left column."""
    fig, ax = plt.subplots(figsize=(8, 3.4 + 0.2 * len(histories)), layout="constrained")
    train, val = [], []
    for k, (name, path) in enumerate(histories.items()):
        h = pd.read_csv(path)
        color = f"C{k % 10}"
        if metric in h:
            train += ax.plot(h["epoch"] + 1, h[metric], marker="o", ms=3, color=color, label=f"{name} (train)")
        if f"val_{metric}" in h:
            val += ax.plot(h["epoch"] + 1, h[f"val_{metric}"], marker="s", ms=3, ls="--", color=color,
                           label=f"{name} (validation)")
    ax.set(xlabel="epoch", ylabel=metric, title=title or f"{metric}: training (solid) and validation (dashed)")
    fig.legend(handles=train + val, loc="outside lower center", ncol=2 if train and val else 1, frameon=False)
    plt.close(fig)
    return fig


@_book_figure
def error_map(pred_csv: str | Path, title: str = "test images coloured by error"):
    """Cartopy map (offline) of test locations coloured by great-circle error (log scale): markers of about
    3 px with a thin dark edge where the book shows the map, small errors drawn on top."""
    from geomtl_core.geo.basemap import world_axes

    import cartopy.crs as ccrs
    from matplotlib.colors import LogNorm

    p = read_predictions(pred_csv)
    err = np.maximum(p.errors_km, 1.0)
    fig, ax = world_axes(plt.figure(figsize=(7.2, 3.5), layout="constrained"))
    order = np.argsort(-err)  # small errors drawn on top
    sc = ax.scatter(p.true_lon[order], p.true_lat[order], c=err[order], s=10, cmap="viridis_r",
                    norm=LogNorm(1, 20_000), transform=ccrs.PlateCarree(), zorder=4, edgecolors="0.15",
                    linewidths=0.3)
    fig.colorbar(sc, ax=ax, shrink=0.7, pad=0.02, label="error (km)")
    ax.set_title(title)
    plt.close(fig)
    return fig


@_book_figure
def label_distribution(meta: pd.DataFrame, column: str, names: list[str] | None = None, title: str | None = None):
    """Bar chart of a label column's counts per split (``meta`` has a ``split`` column)."""
    counts = meta.groupby(["split", column]).size().unstack(0).fillna(0)
    if names is not None:
        counts.index = [names[i] for i in counts.index]
    fig, ax = plt.subplots(figsize=(7, 0.25 * len(counts) + 1.5))
    counts.plot.barh(ax=ax, stacked=True, width=0.8)
    ax.set(xlabel="images", ylabel="", title=title or column)
    fig.tight_layout()
    plt.close(fig)
    return fig


@_book_figure
def cells_vs_tau(table: pd.DataFrame, title: str = "classes against tau_max"):
    """Number of classes and share of points kept per partitioning against tau_max."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(table["tau_max"], table["classes"], marker="o")
    ax.set(xscale="log", yscale="log", xlabel="tau_max (images per cell before split)", ylabel="classes", title=title)
    ax.grid(color="0.9")
    fig.tight_layout()
    plt.close(fig)
    return fig


@_book_figure
def difference_intervals(table: pd.DataFrame, label: str = "comparison", title: str = "differences with 95% CIs",
                         paper: str | None = None):
    """Forest plot: one row per comparison, its difference (points) and 95% interval; a vertical line at 0
    and, with ``paper`` (a column name), the published difference as a cross; the legend under the axes."""
    t = table.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(t) + 1.7), layout="constrained")
    y = np.arange(len(t))[::-1]
    colour = np.array([{1: "C2", -1: "C3", 0: "0.35"}[direction(lo, hi)] for lo, hi in zip(t["ci_lo"], t["ci_hi"],
                                                                                             strict=True)])
    ax.hlines(y, t["ci_lo"], t["ci_hi"], colors=list(colour), lw=1.4)
    ax.scatter(t["diff"], y, c=colour, s=16, zorder=3, label="proxy (95% CI over seeds, then blocks)")
    if paper is not None and t[paper].notna().any():
        ax.scatter(t[paper], y, marker="x", color="C1", s=30, zorder=4, label="published (Im2GPS)")
    ax.axvline(0, color="0.6", lw=0.8)
    ax.set_yticks(y, t[label])
    ax.set(xlabel="difference b − a (percentage points)", title=title)
    ax.set_ylim(-0.8, len(t) - 0.2)
    fig.legend(loc="outside lower center", ncol=len(ax.get_legend_handles_labels()[0]), frameon=False)
    ax.grid(axis="x", color="0.92")
    plt.close(fig)
    return fig


@_book_figure
def power_before_after(power: pd.DataFrame, margin: float | None = None,
                       title: str = "what each row can resolve: one split against pooled folds"):
    """Per primary and positive-control row (:func:`geomtl_core.compendium.tables.power_table`): the interval's
    half-width and the minimum detectable effect on the scale's one split (open) and pooled over its folds
    (filled), with the equivalence margin as a line."""
    t = power.reset_index()
    labels = [f"{r.family} · {r.model} · {r.share} · {r.b}" for r in t.itertuples()]
    fig, axes = plt.subplots(1, 2, figsize=(8, 0.34 * len(t) + 2.0), sharey=True, layout="constrained")
    y = np.arange(len(t))[::-1]
    for ax, what in zip(axes, ("±", "mde"), strict=True):
        before, after = t[f"{what} (split)"], t[f"{what} (pooled)"]
        ax.hlines(y, np.minimum(before, after), np.maximum(before, after), colors="0.75", lw=1.2)
        ax.scatter(before, y, facecolors="none", edgecolors="C0", s=28, label="one split")
        ax.scatter(after, y, color="C0", s=28, label="pooled over folds")
        if margin is not None and what == "±":
            ax.axvline(margin, color="C1", lw=0.9, ls="--", label=f"equivalence margin ±{margin:g}")
        ax.set(xlabel="95% half-width (points)" if what == "±" else "mde: 80% power, Holm level (points)",
               xlim=(0, None))
        ax.grid(axis="x", color="0.92")
    axes[0].set_yticks(y, labels)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=3, frameon=False)
    fig.suptitle(title)
    plt.close(fig)
    return fig


@_book_figure
def accuracy_cost(table: pd.DataFrame, acc: str = f"acc {PRIMARY_KM} km %", cost: str = "train time (s)",
                  title: str = "accuracy against training time (Pareto front joined)"):
    """Accuracy with its 95% interval against a cost column of
    :func:`geomtl_core.compendium.tables.cost_table`, one marker per method (f*, kNN, hybrid), colour per model,
    size per training share; the Pareto front (``pareto``) joined by a line."""
    t = table.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, 5.2), layout="constrained")
    markers = {"f*": "o", "knn": "s", "hybrid": "D"}
    colours = {m: f"C{k}" for k, m in enumerate(dict.fromkeys(t["model"]))}
    size = t["share"].str.rstrip("%").astype(float)
    for (_, r), s in zip(t.iterrows(), size, strict=True):
        a, x = r[acc], r[cost]
        ax.errorbar(x, a, yerr=[[a - r["ci95 low"]], [r["ci95 high"] - a]], fmt="none", ecolor=colours[r["model"]],
                    alpha=0.5, lw=1)
        ax.scatter(x, a, marker=markers.get(r["method"], "o"), color=colours[r["model"]], s=14 + 0.5 * s,
                   edgecolors="k" if r["pareto"] else "none", linewidths=0.8, zorder=3)
    front = t[t["pareto"]].sort_values(cost)
    ax.plot(front[cost], front[acc], color="0.4", lw=1, ls="--", zorder=2)
    ax.set_xscale("log")
    ax.set(xlabel=f"{cost}, log scale (mean over seeds)", ylabel=f"{acc} (95% CI over seeds, then blocks)",
           title=title)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker=markers[m], ls="", color="0.3", label=m) for m in markers if m in set(t["method"])]
    handles += [Line2D([], [], marker="o", ls="", color=c, label=m) for m, c in colours.items()]
    handles += [Line2D([], [], color="0.4", ls="--", label="Pareto front (black edge)")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False)
    ax.grid(color="0.92")
    plt.close(fig)
    return fig


VERDICT_COLOURS = {"helps": "C2", "hurts": "C3", "equivalent": "C0"}
"""Colour of a verdict word in :func:`confirmatory_answer` (any other word, such as "not resolved", grey)."""


@_book_figure
def confirmatory_answer(verdict: pd.DataFrame, scale: str = "default"):
    """The answer at a glance (the book's first page): each confirmatory row of the verdict table, multi-task −
    single-task at the primary endpoint with its 95% interval, coloured and labelled by its word, over the
    ±equivalence margin band that an interval must fit inside for "equivalent"."""
    conf = verdict[verdict["role"] == "confirmatory"].reset_index(drop=True) if "role" in verdict else verdict[:0]
    if conf.empty:
        raise ValueError("the verdict table has no confirmatory row to draw")
    margin = float(conf["equiv_margin"].iloc[0])
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(conf) + 1.9), layout="constrained")
    y = np.arange(len(conf))[::-1]
    colour = [VERDICT_COLOURS.get(w, "0.35") for w in conf["verdict"]]
    ax.axvspan(-margin, margin, color="C0", alpha=0.12, lw=0, label=f"equivalence margin ±{margin:g} point")
    ax.axvline(0, color="0.5", lw=0.8)
    ax.hlines(y, conf["ci_lo"], conf["ci_hi"], colors=colour, lw=2.2,
              label=f"95% interval ({conf['interval'].iloc[0]})")
    ax.scatter(conf["diff"], y, c=colour, s=36, zorder=3, label="difference")
    for yk, r, c in zip(y, conf.itertuples(), colour, strict=True):
        ax.annotate(f"{r.verdict}\n{r.diff:+.2f} [{r.ci_lo:+.2f}, {r.ci_hi:+.2f}]", (1.02, yk),
                    xycoords=("axes fraction", "data"), va="center", color=c)
    reach = max(margin, conf["ci_lo"].abs().max(), conf["ci_hi"].abs().max()) * 1.15
    ax.set_xlim(-reach, reach)
    ax.set_ylim(-0.6, len(conf) - 0.4)
    ax.set_yticks(y, [f"{model_label(r.model, scale)}\n{round(100 * r.data_fraction)}% of the training images"
                      for r in conf.itertuples()])
    ax.set(xlabel=f"multi-task − single-task, accuracy within {PRIMARY_KM} km (points)",
           title=f"Does the scene task help? The {len(conf)} confirmatory rows")
    ax.grid(axis="x", color="0.92")
    fig.legend(loc="outside lower center", ncol=3, frameon=False)
    plt.close(fig)
    return fig
