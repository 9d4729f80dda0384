"""Probability maps of one prediction: the cells of the coarse, middle and fine partitioning
coloured by probability (the top cells only, for speed), with the guess and the EXIF truth marked.

Offline: coastlines come from :func:`geomtl_core.geo.basemap.world_axes`, cell outlines from
:func:`geomtl_core.geo.s2.cell_polygons`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

MAX_CELLS = 50
"""Cells drawn per panel: the most probable ones ..."""
MIN_P = 1e-3
"""... with probability at least this (the top cell is always drawn)."""


def map_paths(out: str | os.PathLike, files: list[Path]) -> dict[str, Path]:
    """Where each input's map goes.

    One input file: ``OUT`` itself. Several: ``OUT_<stem>.png`` beside ``OUT`` (``OUT`` minus its
    suffix), or ``OUT/<stem>.png`` when ``OUT`` is an existing folder or ends with a slash.
    Repeated stems get ``_2``, ``_3``, ... so no map overwrites another.

    >>> {k: str(v) for k, v in map_paths("m.png", [Path("a/x.jpg"), Path("b/x.jpg")]).items()}
    {'a/x.jpg': 'm_x.png', 'b/x.jpg': 'm_x_2.png'}
    """
    out_s = str(out)
    out = Path(out)
    if len(files) == 1 and not out.is_dir() and not out_s.endswith(("/", os.sep)):
        return {str(files[0]): out}
    folder = out.is_dir() or out_s.endswith(("/", os.sep))
    seen: dict[str, int] = {}
    targets = {}
    for f in files:
        stem = f.stem or "image"
        seen[stem] = seen.get(stem, 0) + 1
        name = stem if seen[stem] == 1 else f"{stem}_{seen[stem]}"
        suffix = out.suffix or ".png"
        targets[str(f)] = out / f"{name}.png" if folder else out.with_name(f"{out.stem}_{name}{suffix}")
    return targets


def _panels(parts: list) -> list[tuple[str, object]]:
    if len(parts) >= 3:
        return [("coarse", parts[0]), ("middle", parts[len(parts) // 2]), ("fine", parts[-1])]
    names = ["coarse", "fine"] if len(parts) == 2 else ["cells"]
    return list(zip(names, parts, strict=True))


def plot_prediction(result: dict, probs: dict[str, np.ndarray], parts: list, out: str | os.PathLike,
                    dpi: int = 100, max_cells: int = MAX_CELLS, min_p: float = MIN_P) -> Path:
    """Write the map PNG of one result (from :func:`geomtl_core.inference.predict.predict`) and its probabilities."""
    from geomtl_core.geo.basemap import world_axes
    from geomtl_core.geo.s2 import cell_polygons

    import cartopy.crs as ccrs
    import matplotlib
    import shapely
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    panels = _panels(parts)
    fig = Figure(figsize=(7.5, 3.6 * len(panels)))
    cmap = matplotlib.colormaps["YlOrRd"]
    pc = ccrs.PlateCarree()
    for k, (scale, part) in enumerate(panels):
        _, ax = world_axes(fig, subplot=(len(panels), 1, k + 1))
        p = np.asarray(probs[part.name], dtype=np.float64)
        order = np.argsort(-p)[:max_cells]
        order = order[(p[order] >= min_p) | (np.arange(len(order)) == 0)]
        norm = Normalize(0.0, float(p[order[0]]))
        polys = shapely.polygons(cell_polygons(part.cell_ids[order]))
        for poly, c in zip(polys[::-1], order[::-1], strict=True):  # most probable drawn last, on top
            ax.add_geometries([poly], crs=pc, facecolor=cmap(norm(p[c])), edgecolor="k", linewidth=0.2, alpha=0.85,
                              zorder=2)
        ax.plot(result["lon"], result["lat"], marker="*", color="#1f4fd1", markersize=11, markeredgecolor="white",
                transform=pc, zorder=5, label="guess", linestyle="none")
        if result.get("true_lat") is not None:
            ax.plot(result["true_lon"], result["true_lat"], marker="X", color="#1a9641", markersize=9,
                    markeredgecolor="white", transform=pc, zorder=6, label="EXIF GPS", linestyle="none")
        ax.set_title(f"{scale}: {part.name} ({len(part)} cells, {len(order)} drawn)", fontsize=9)
        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.7, label="probability")
        if k == 0:
            ax.legend(loc="lower left", fontsize=7)
    place = ", ".join(x for x in (result.get("place"), result.get("country")) if x)
    err = f", error {result['error_km']:.0f} km" if result.get("error_km") is not None else ""
    scene = "; ".join(f"{t}: {s['label']}" for t, s in (result.get("scene") or {}).items())
    fig.suptitle(f"{Path(result['path']).name}: {result['lat']:.3f}, {result['lon']:.3f} ({place}){err}"
                 + (f"\nscene {scene}" if scene else ""), fontsize=10)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, bbox_inches="tight")
    return out
