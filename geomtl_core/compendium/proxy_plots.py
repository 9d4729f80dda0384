"""Figures of the proxy dataset: a grid of samples with their labels, and a map of locations by split.

Sized like the report's other figures (``geomtl_core.compendium.plots``): every text at least 10 px where the book
shows it, a column 676 px wide (``plots.smallest_text_px``; this module is beside plots, not above it, so it states
its font sizes itself)."""

from __future__ import annotations

import numpy as np
import pandas as pd

SPLIT_COLOURS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#d62728"}


def plot_samples(images: np.ndarray, meta: pd.DataFrame, cols: int = 3, title: str | None = None):
    """Grid of ``images`` (N, H, W, 3) titled with coordinates, IGBP class, group and Köppen class of the
    rows of ``meta`` (columns lat, lon and s16/s3/kg as from read_metadata, or igbp/group/koppen); three columns
    by default, so that the three-line titles can be large enough to read in the book's column."""
    from geomtl_core.data.proxy.labels import GROUP_NAMES, IGBP_NAMES, KOPPEN_NAMES

    import matplotlib.pyplot as plt

    n = len(images)
    if n == 0 or len(meta) != n:
        raise ValueError(f"need as many metadata rows as images, got {len(meta)} and {n}")
    igbp = meta["s16"] if "s16" in meta else meta["igbp"]
    group = meta["s3"] if "s3" in meta else meta["group"]
    kg = meta["kg"] if "kg" in meta else meta["koppen"]
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.8 * rows), squeeze=False, layout="constrained")
    for ax in axes.ravel():
        ax.axis("off")
    for k, ax in enumerate(axes.ravel()[:n]):
        ax.imshow(images[k])
        ax.set_title(
            f"{meta['lat'].iloc[k]:.2f}, {meta['lon'].iloc[k]:.2f}\n{IGBP_NAMES[int(igbp.iloc[k])][:28]}\n"
            f"{GROUP_NAMES[int(group.iloc[k])]} | {KOPPEN_NAMES[int(kg.iloc[k])].split()[0]}",
            fontsize=9,
        )
    if title:
        fig.suptitle(title, fontsize=11)
    plt.close(fig)
    return fig


def plot_split_map(lat_lon_split: pd.DataFrame, title: str = "proxy locations by split", s: float = 0.5):
    """World map (offline cartopy) of locations coloured by split; columns lat, lon, split."""
    from geomtl_core.geo.basemap import world_axes

    import cartopy.crs as ccrs
    import matplotlib.pyplot as plt

    fig, ax = world_axes(plt.figure(figsize=(7, 3.8), layout="constrained"))
    for split, colour in SPLIT_COLOURS.items():
        sub = lat_lon_split[lat_lon_split["split"] == split]
        ax.scatter(sub["lon"], sub["lat"], s=s, color=colour, transform=ccrs.PlateCarree(),
                   label=f"{split} ({len(sub):,})", zorder=4, linewidths=0)
    ax.legend(loc="lower left", markerscale=8, fontsize=9)
    ax.set_title(title, fontsize=11)
    plt.close(fig)
    return fig


def plot_nearest_train(root, folds: list[int], thresholds_km: tuple[int, ...] = (25, 200, 750)):
    """Cumulative share of each fold's test images by the distance to their nearest training image (km, log
    axis), from the fold CSVs under ``root/folds``: the distances a pixel-disjoint split leaves."""
    from pathlib import Path

    from geomtl_core.data.metadata import read_metadata
    from geomtl_core.data.spatial_split import nearest_train_km

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for j in folds:
        parts = [read_metadata(Path(root) / "folds" / f"k{j}" / f"{s}.csv") for s in ("train", "test")]
        lat = np.concatenate([p["lat"].to_numpy() for p in parts])
        lon = np.concatenate([p["lon"].to_numpy() for p in parts])
        split = np.repeat([0, 2], [len(p) for p in parts])
        d = np.sort(nearest_train_km(lat, lon, split, of=2))
        ax.plot(d, np.arange(1, len(d) + 1) / len(d), lw=1.2, label=f"fold {j}")
    for t in thresholds_km:
        ax.axvline(t, color="0.6", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("test image to its nearest training image (km)", fontsize=11)
    ax.set_ylabel("share of test images", fontsize=11)
    ax.tick_params(labelsize=10)
    ax.legend(fontsize=9, ncol=2)
    fig.tight_layout()
    plt.close(fig)  # shown once, as the cell's value
    return fig
