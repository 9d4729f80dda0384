"""Figures of the report: accuracy-vs-distance curves, accuracies with confidence intervals,
training curves, error maps and label distributions. Each returns a matplotlib figure."""

from __future__ import annotations

from pathlib import Path

from geomtl_core.data.predictions import read_predictions
from geomtl_core.geo.protocol import PRIMARY_KM, THRESHOLDS_KM, direction

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


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
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    plt.close(fig)
    return fig


def accuracy_with_ci(results: dict[str, dict], names: list[str] | None = None, split: str = "test",
                     title: str = "accuracy with 95% bootstrap intervals"):
    """Accuracy at each threshold with its 95% CI, runs side by side (dodged points with error bars)."""
    names = names or list(results)
    fig, ax = plt.subplots(figsize=(7.5, 4))
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
    ax.legend(fontsize=8)
    ax.grid(axis="y", color="0.9")
    fig.tight_layout()
    plt.close(fig)
    return fig


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


def training_curves(histories: dict[str, str | Path], metric: str = "loss", title: str | None = None):
    """A metric of the training log per epoch, one colour per run: training solid, validation dashed
    (where the training budget is read off)."""
    fig, ax = plt.subplots(figsize=(8.5, 3.6))
    for k, (name, path) in enumerate(histories.items()):
        h = pd.read_csv(path)
        color = f"C{k % 10}"
        if metric in h:
            ax.plot(h["epoch"] + 1, h[metric], marker="o", ms=3, color=color, label=f"{name} (train)")
        if f"val_{metric}" in h:
            ax.plot(h["epoch"] + 1, h[f"val_{metric}"], marker="s", ms=3, ls="--", color=color,
                    label=f"{name} (validation)")
    ax.set(xlabel="epoch", ylabel=metric, title=title or f"{metric}: training (solid) and validation (dashed)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    plt.close(fig)
    return fig


def error_map(pred_csv: str | Path, title: str = "test images coloured by error"):
    """Cartopy map (offline) of test locations coloured by great-circle error (log scale)."""
    from geomtl_core.geo.basemap import world_axes

    import cartopy.crs as ccrs
    from matplotlib.colors import LogNorm

    p = read_predictions(pred_csv)
    err = np.maximum(p.errors_km, 1.0)
    fig, ax = world_axes()
    order = np.argsort(-err)  # small errors drawn on top
    sc = ax.scatter(p.true_lon[order], p.true_lat[order], c=err[order], s=2, cmap="viridis_r",
                    norm=LogNorm(1, 20_000), transform=ccrs.PlateCarree(), zorder=4, linewidths=0)
    fig.colorbar(sc, ax=ax, shrink=0.6, label="error (km)")
    ax.set_title(title)
    plt.close(fig)
    return fig


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


def cells_vs_tau(table: pd.DataFrame, title: str = "classes against tau_max"):
    """Number of classes and share of points kept per partitioning against tau_max."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(table["tau_max"], table["classes"], marker="o")
    ax.set(xscale="log", yscale="log", xlabel="tau_max (images per cell before split)", ylabel="classes", title=title)
    ax.grid(color="0.9")
    fig.tight_layout()
    plt.close(fig)
    return fig


def difference_intervals(table: pd.DataFrame, label: str = "comparison", title: str = "differences with 95% CIs",
                         paper: str | None = None):
    """Forest plot: one row per comparison, its difference (points) and 95% interval; a vertical line at 0
    and, with ``paper`` (a column name), the published difference as a cross."""
    t = table.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(t) + 1.4))
    y = np.arange(len(t))[::-1]
    colour = np.array([{1: "C2", -1: "C3", 0: "0.35"}[direction(lo, hi)] for lo, hi in zip(t["ci_lo"], t["ci_hi"],
                                                                                             strict=True)])
    ax.hlines(y, t["ci_lo"], t["ci_hi"], colors=list(colour), lw=1.4)
    ax.scatter(t["diff"], y, c=colour, s=16, zorder=3, label="proxy (95% CI over seeds, then blocks)")
    if paper is not None and t[paper].notna().any():
        ax.scatter(t[paper], y, marker="x", color="C1", s=30, zorder=4, label="published (Im2GPS)")
    ax.axvline(0, color="0.6", lw=0.8)
    ax.set_yticks(y, t[label], fontsize=7)
    ax.set(xlabel="difference b − a (percentage points)", title=title)
    ax.set_ylim(-0.8, len(t) - 0.2)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(axis="x", color="0.92")
    fig.tight_layout()
    plt.close(fig)
    return fig


def power_before_after(power: pd.DataFrame, margin: float | None = None,
                       title: str = "what each row can resolve: one split against pooled folds"):
    """Per primary and positive-control row (:func:`geomtl_core.compendium.tables.power_table`): the interval's
    half-width and the minimum detectable effect on the scale's one split (open) and pooled over its folds
    (filled), with the equivalence margin as a line."""
    t = power.reset_index()
    labels = [f"{r.family} · {r.model} · {r.share} · {r.b}" for r in t.itertuples()]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.34 * len(t) + 1.6), sharey=True)
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
    axes[0].set_yticks(y, labels, fontsize=7)
    handles, names = axes[0].get_legend_handles_labels()
    axes[1].legend(handles, names, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    plt.close(fig)
    return fig


def accuracy_cost(table: pd.DataFrame, acc: str = f"acc {PRIMARY_KM} km %", cost: str = "train time (s)",
                  title: str = "accuracy against training time (Pareto front joined)"):
    """Accuracy with its 95% interval against a cost column of
    :func:`geomtl_core.compendium.tables.cost_table`, one marker per method (f*, kNN, hybrid), colour per model,
    size per training share; the Pareto front (``pareto``) joined by a line."""
    t = table.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
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
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(color="0.92")
    fig.tight_layout()
    plt.close(fig)
    return fig
