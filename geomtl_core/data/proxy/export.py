"""The embedded default dataset ("proxy"): overhead crops of NASA Blue Marble around 100,000 real
MP-16 photo locations, labelled from MODIS land cover and Köppen-Geiger rasters, exported in the
MP-16 on-disk format (msgpack shards of JPEGs + GeoEstimation metadata CSVs). See book/proxy.md."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from geomtl_core.data.spatial_split import spatial_split
from geomtl_core.errors import InputError
from geomtl_core.geo.geodesy import validate_coordinates

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from geomtl_core.data.proxy.footprints import Footprints

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ProxyConfig:
    """What is exported: how many locations, the seeded split, and the crop geometry."""

    n: int | None = None  # None: all 100,000 locations
    seed: int = 0
    fov_km: float = 100.0  # pixel-disjoint folds keep >= 70% of training crops (book/method.md, "The benchmark")
    size: int = 64
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_grid_deg: float = 5.0  # locations in one cell of this lat/lon grid share a split (blocked)
    pixel_disjoint: bool = True  # training crops sharing a source pixel with a val/test crop are left out
    buffer_km: float = 0.0  # training locations this close to a val/test location are left out (photos' radius)
    max_block_share: float = 0.075  # val/test images per 5-degree block, at most this share of the split
    quality: int = 90
    scene_label: str = "crop_majority_8x8"  # S3/S16: majority land cover over an 8x8 sample of the crop
    per_shard: int = 10_000
    batch: int = 256


def load_locations() -> pd.DataFrame:
    """The 100,000 MP-16 photo coordinates of GeoCLIP's GPS gallery, with stable ids by row."""
    from geomtl_core.data.assets import asset_path

    df = pd.read_csv(asset_path("coordinates_100k"))
    lat, lon = validate_coordinates(df["LAT"], df["LON"], what="gallery coordinates")
    return pd.DataFrame({"img_id": [f"proxy_{k:06d}" for k in range(len(df))], "lat": lat, "lon": lon})


def select_locations(locs: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """All locations, or a seeded random subset of ``n`` kept in gallery order."""
    if n is None or n >= len(locs):
        return locs.reset_index(drop=True)
    if n < 1:
        raise InputError(f"n must be positive, got {n}")
    keep = np.sort(np.random.default_rng(seed).choice(len(locs), size=n, replace=False))
    return locs.iloc[keep].reset_index(drop=True)


def crop_overlap(locs: pd.DataFrame, cfg: ProxyConfig) -> Footprints | None:
    """The crops' source-pixel footprints when the config asks for a pixel-disjoint split, else None."""
    from geomtl_core.data.proxy.footprints import Footprints

    if not cfg.pixel_disjoint:
        return None
    return Footprints.of_crops(locs["lat"].to_numpy(), locs["lon"].to_numpy(), cfg.fov_km, cfg.size)


def labelled_locations(cfg: ProxyConfig, diagnostics: dict | None = None) -> pd.DataFrame:
    """Locations of the config with labels (igbp, group, koppen, koppen_filled) and split; locations the
    split leaves out (exclusions, block cap) are not returned. ``diagnostics``, if given, receives the split's
    leakage figures (:func:`geomtl_core.data.leakage.split_diagnostics`)."""
    from geomtl_core.data.leakage import split_diagnostics
    from geomtl_core.data.proxy.labels import crop_landcover, labels_at

    locs = select_locations(load_locations(), cfg.n, cfg.seed)
    lab = labels_at(locs["lat"], locs["lon"])
    scene_igbp, scene_group = crop_landcover(locs["lat"], locs["lon"], cfg.fov_km)
    lat, lon = locs["lat"].to_numpy(), locs["lon"].to_numpy()
    footprints = crop_overlap(locs, cfg)
    split = spatial_split(lat, lon, cfg.seed, cfg.fractions, cfg.split_grid_deg, cfg.buffer_km, cfg.max_block_share,
                          overlap=footprints)
    if diagnostics is not None:
        cells = spatial_split(lat, lon, cfg.seed, cfg.fractions, cfg.split_grid_deg, 0.0, 1.0)
        shared = None if footprints is None else footprints.shared_with(split == 0)
        diagnostics.update(split_diagnostics(lat, lon, split, cells == 0, shared))
    out = locs.assign(igbp=lab.igbp, group=lab.group, koppen=lab.koppen, koppen_filled=lab.koppen_filled,
                      scene_igbp=scene_igbp, scene_group=scene_group, split=np.asarray(SPLITS)[np.maximum(split, 0)])
    return out[split >= 0].reset_index(drop=True)


def metadata_table(df: pd.DataFrame) -> pd.DataFrame:
    """GeoEstimation's metadata layout with land-cover labels in the scene columns, plus KG_Label.

    S3/S16 hold the crop's majority group / IGBP class (what the image shows, like Places365's
    scene labels); S365 keeps the IGBP class of the centre pixel; KG the centre's Köppen class.
    """
    onehot = np.eye(3)[df["scene_group"].to_numpy()]
    return pd.DataFrame({
        "IMG_ID": df["img_id"], "AUTHOR": "proxy", "LAT": df["lat"], "LON": df["lon"],
        "S3_Label": df["scene_group"], "S16_Label": df["scene_igbp"], "S365_Label": df["igbp"],
        "Prob_indoor": onehot[:, 0], "Prob_natural": onehot[:, 1], "Prob_urban": onehot[:, 2],
        "KG_Label": df["koppen"],
    })


def iter_records(df: pd.DataFrame, cfg: ProxyConfig, progress=None) -> Iterator[tuple[str, bytes]]:
    """``(id, JPEG bytes)`` of each location's crop, cut in vectorised batches."""
    from geomtl_core.data.proxy.world import cut, load_world

    import simplejpeg

    world = load_world()
    lat, lon, ids = df["lat"].to_numpy(), df["lon"].to_numpy(), df["img_id"].to_numpy()
    for start in range(0, len(df), cfg.batch):
        sl = slice(start, start + cfg.batch)
        crops = cut(world, lat[sl], lon[sl], cfg.fov_km, cfg.size)
        for img_id, crop in zip(ids[sl], crops, strict=True):
            yield str(img_id), simplejpeg.encode_jpeg(crop, quality=cfg.quality)
        if progress is not None:
            progress.update(len(crops))


def label_counts(df: pd.DataFrame) -> dict:
    """Counts of every label by name, overall and per split (for proxy.json and the docs)."""
    from geomtl_core.data.proxy.labels import GROUP_NAMES, IGBP_NAMES, KOPPEN_NAMES

    def named(col: str, names: list[str], sub: pd.DataFrame) -> dict[str, int]:
        c = np.bincount(sub[col].to_numpy(), minlength=len(names))
        return {n: int(v) for n, v in zip(names, c, strict=True)}

    out = {"igbp": named("igbp", IGBP_NAMES, df), "group": named("group", GROUP_NAMES, df),
           "scene_igbp_crop_majority": named("scene_igbp", IGBP_NAMES, df),
           "scene_group_crop_majority": named("scene_group", GROUP_NAMES, df),
           "koppen": named("koppen", KOPPEN_NAMES, df),
           "koppen_filled_from_nearest_land": int(df["koppen_filled"].sum()),
           "water_points": int((df["igbp"] == 0).sum()),
           "duplicate_coordinates": int(df.duplicated(["lat", "lon"]).sum())}
    out["splits"] = {s: int((df["split"] == s).sum()) for s in SPLITS}
    return out


def export_proxy(out: str | Path, cfg: ProxyConfig = ProxyConfig(), progress: bool = True) -> dict:
    """Write ``OUT/{train,val,test}/shard_*.msg``, ``OUT/{split}.csv`` and ``OUT/proxy.json``; return the json."""
    from geomtl_core.data.assets import load_assets
    from geomtl_core.data.leakage import BENCHMARK
    from geomtl_core.data.proxy.labels import GROUP_NAMES, IGBP_NAMES, KOPPEN_FILL_KM, KOPPEN_NAMES
    from geomtl_core.data.proxy.world import check_crop
    from geomtl_core.data.shards import write_shards

    from tqdm.auto import tqdm

    check_crop(cfg.fov_km, cfg.size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    leakage: dict = {}
    df = labelled_locations(cfg, leakage)
    bar = tqdm(total=len(df), unit="img", desc="proxy export", disable=not progress)
    shards: dict[str, int] = {}
    for split in SPLITS:
        part = df[df["split"] == split]
        metadata_table(part).to_csv(out / f"{split}.csv", index=False)
        for old in (out / split).glob("shard_*.msg"):
            old.unlink()
        shards[split] = len(write_shards(iter_records(part, cfg, bar), out / split, cfg.per_shard))
    bar.close()
    info = {
        "dataset": "geomtl proxy: Blue Marble crops at MP-16 locations (book/proxy.md)",
        "config": asdict(cfg), "benchmark": BENCHMARK if cfg.pixel_disjoint else None, "leakage": leakage,
        "n": len(df), "shards": shards, "counts": label_counts(df),
        "label_meaning": {"S3_Label": "majority 3-way group over an 8x8 sample of the crop",
                          "S16_Label": "majority IGBP class over an 8x8 sample of the crop",
                          "S365_Label": "IGBP class of the centre pixel", "KG_Label": "Koppen class of the centre"},
        "label_names": {"S3_Label": GROUP_NAMES, "S16_Label": IGBP_NAMES, "S365_Label": IGBP_NAMES,
                        "KG_Label": KOPPEN_NAMES},
        "koppen_fill_km": KOPPEN_FILL_KM,
        "assets": {a.name: {"package": f"{a.package}=={a.version}", "member": a.member, "sha256": a.sha256}
                   for a in load_assets().values()},
    }
    (out / "proxy.json").write_text(json.dumps(info, indent=2))
    return info
