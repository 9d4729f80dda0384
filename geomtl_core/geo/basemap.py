"""Offline cartopy maps: Natural Earth coastlines and borders derived from pyogrio's bundled
``naturalearth_lowres`` countries, so no plot ever downloads anything."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

NE_CACHE = Path(os.environ.get("GEOMTL_CACHE", Path.home() / ".cache" / "geomtl")) / "natural_earth"


def _countries_wkb() -> np.ndarray:
    """Country polygons (WKB) of the fixture that ships inside the pyogrio wheel."""
    import pyogrio
    import pyogrio.raw

    path = Path(pyogrio.__file__).parent / "tests" / "fixtures" / "naturalearth_lowres" / "naturalearth_lowres.shp"
    if not path.exists():
        raise FileNotFoundError(f"pyogrio's naturalearth_lowres fixture is missing at {path}")
    _meta, _fids, geometry, _fields = pyogrio.raw.read(path)
    return geometry


def ensure_offline_natural_earth(root: Path = NE_CACHE) -> Path:
    """Write ne_110m coastline/land/borders shapefiles under ``root`` and point cartopy there.

    Coastline = boundary of the union of all countries; borders = country boundaries that
    are not coastline. After this, ``ax.coastlines()`` and ``cfeature.BORDERS`` work offline.
    """
    import cartopy
    import pyogrio.raw
    import shapely

    phys = root / "shapefiles" / "natural_earth" / "physical"
    cult = root / "shapefiles" / "natural_earth" / "cultural"
    files = {
        "coast": phys / "ne_110m_coastline.shp",
        "land": phys / "ne_110m_land.shp",
        "borders": cult / "ne_110m_admin_0_boundary_lines_land.shp",
    }
    if not all(f.exists() for f in files.values()):
        phys.mkdir(parents=True, exist_ok=True)
        cult.mkdir(parents=True, exist_ok=True)
        countries = shapely.from_wkb(_countries_wkb())
        countries = shapely.make_valid(countries)
        land = shapely.unary_union(countries)
        coast = shapely.boundary(land)
        borders = shapely.difference(shapely.unary_union(shapely.boundary(countries)), shapely.buffer(coast, 1e-6))
        for key, geoms in (("coast", [coast]), ("land", [land]), ("borders", [borders])):
            gtype = "MultiPolygon" if key == "land" else "MultiLineString"
            pyogrio.raw.write(
                files[key], geometry=shapely.to_wkb(np.array(geoms, dtype=object)), field_data=[], fields=[],
                geometry_type=gtype, crs="EPSG:4326", promote_to_multi=True,
            )
    cartopy.config["pre_existing_data_dir"] = str(root)
    return root


def world_axes(fig=None, projection=None, subplot: int | tuple = 111):
    """A global cartopy axes with offline coastlines and borders."""
    import cartopy.crs as ccrs
    import cartopy.feature as cfeature
    import matplotlib.pyplot as plt

    ensure_offline_natural_earth()
    fig = fig or plt.figure(figsize=(11, 5.5))
    args = subplot if isinstance(subplot, tuple) else (subplot,)
    ax = fig.add_subplot(*args, projection=projection or ccrs.Robinson())
    ax.set_global()
    ax.add_feature(cfeature.LAND, facecolor="#f2efe9", zorder=0)
    ax.coastlines(linewidth=0.4, color="#555555", zorder=3)
    ax.add_feature(cfeature.BORDERS, linewidth=0.2, edgecolor="#999999", zorder=3)
    return fig, ax


def plot_partitioning(part, ax=None, cmap: str = "viridis", title: str | None = None):
    """Map of a partitioning's cells coloured by images per cell (log scale)."""
    from geomtl_core.geo.s2 import cell_polygons

    import cartopy.crs as ccrs
    import matplotlib.pyplot as plt
    import shapely
    from matplotlib.colors import LogNorm

    fig, ax = world_axes() if ax is None else (ax.figure, ax)
    outlines = cell_polygons(part.cell_ids)
    polys = shapely.polygons(outlines)
    norm = LogNorm(vmin=max(1, part.counts.min()), vmax=max(2, part.counts.max()))
    colours = plt.get_cmap(cmap)(norm(part.counts))
    for poly, colour in zip(polys, colours, strict=True):
        ax.add_geometries([poly], crs=ccrs.PlateCarree(), facecolor=colour, edgecolor="k", linewidth=0.05)
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, shrink=0.6, label="images per cell")
    ax.set_title(title or f"{part.name or 'partitioning'}: {len(part)} cells")
    plt.close(fig)
    return fig
