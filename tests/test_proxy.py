"""The embedded default (proxy) dataset: crops match the world image, are unstretched and wrap; labels
match the rasters; export reads back through the MP-16 readers; splits are disjoint and seeded."""

import json

from geomtl_core.data.assets import asset_path
from geomtl_core.data.metadata import read_metadata
from geomtl_core.data.proxy.export import ProxyConfig, export_proxy, labelled_locations, load_locations
from geomtl_core.data.proxy.labels import IGBP_TO_GROUP, igbp_at, koppen_at, labels_at
from geomtl_core.data.proxy.rasters import trusted_large_images
from geomtl_core.data.proxy.world import cut, destinations, load_world, offsets_km
from geomtl_core.data.shards import open_source
from geomtl_core.data.spatial_split import assign_splits
from geomtl_core.errors import InputError
from geomtl_core.geo.geodesy import InvalidCoordinatesError, haversine_km

import numpy as np
import pandas as pd
import pytest
import simplejpeg
from PIL import Image


@pytest.fixture(scope="module")
def world():
    return load_world()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("proxy")
    cfg = ProxyConfig(n=400, seed=3, fov_km=250.0, size=32, per_shard=100)
    return out, cfg, export_proxy(out, cfg, progress=False)


def _manual_bilinear(img: np.ndarray, lat: float, lon: float) -> np.ndarray:
    """Independent bilinear lookup: pixel centres at half steps, longitude wraps."""
    h, w = img.shape[:2]
    x, y = (lon + 180) / 360 * w - 0.5, (90 - lat) / 180 * h - 0.5
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    fx, fy = x - x0, y - y0
    px = lambda r, c: img[r, c % w].astype(float)  # noqa: E731
    top = px(y0, x0) * (1 - fx) + px(y0, x0 + 1) * fx
    bot = px(y0 + 1, x0) * (1 - fx) + px(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bot * fy


def test_centre_pixel_is_the_world_image_at_the_location(world):
    img = np.asarray(Image.open(asset_path("bmng")).convert("RGB"))
    for lat, lon in [(48.8566, 2.3522), (-33.87, 151.21), (35.68, 139.69), (64.1, -21.9), (-0.5, 179.97)]:
        crop = cut(world, lat, lon, fov_km=100, size=9)[0]
        np.testing.assert_allclose(crop[4, 4], _manual_bilinear(img, lat, lon), atol=1)


def test_nile_delta_is_greener_and_darker_than_the_sahara(world):
    nile, sahara = cut(world, [31.0, 23.0], [31.0, 25.0], fov_km=60, size=16).astype(float)
    assert nile.mean() < sahara.mean()
    green = lambda a: a[..., 1].mean() / a.mean(axis=-1).mean()  # noqa: E731
    assert green(nile) > green(sahara)


def test_crops_wrap_across_the_antimeridian(world):
    a = cut(world, -17.0, 180.0, 300, 64)[0]
    b = cut(world, -17.0, -180.0, 300, 64)[0]
    np.testing.assert_array_equal(a, b)
    c, d = cut(world, [-17.0, -17.0], [179.995, -179.995], 300, 64).astype(float)
    far = cut(world, -17.0, 0.0, 300, 64)[0].astype(float)
    assert np.abs(c - d).mean() < 0.2 * np.abs(c - far).mean()
    _lat, lon = destinations([-17.0], [179.9], *offsets_km(300, 64))
    assert (lon > 179).any() and (lon < -179).any()


@pytest.mark.parametrize("lat", [0.0, 70.0, 89.5])
def test_crops_are_not_stretched_at_high_latitude(lat):
    fov, size = 300.0, 64
    la, lo = destinations([lat], [20.0], *offsets_km(fov, size))
    la, lo = la[0], lo[0]
    c = size // 2
    ew = haversine_km(la[c, c], lo[c, c], la[c, c + 1], lo[c, c + 1])
    ns = haversine_km(la[c, c], lo[c, c], la[c + 1, c], lo[c + 1, c])
    np.testing.assert_allclose([ew, ns], fov / size, rtol=1e-6)
    corner = haversine_km(lat, 20.0, la[0, 0], lo[0, 0])
    np.testing.assert_allclose(corner, np.hypot(1, 1) * (size - 1) / 2 * fov / size, rtol=1e-6)


def test_rotation_turns_the_crop(world):
    a = cut(world, 40.0, -100.0, 300, 33)[0]
    b = cut(world, 40.0, -100.0, 300, 33, rotation_deg=90.0)[0]
    np.testing.assert_allclose(np.rot90(b, k=-1).astype(float), a.astype(float), atol=1)  # up = east


def test_labels_spot_checks():
    lab = labels_at([23.0, -5.0, 0.0, 48.85, -80.0], [25.0, -65.0, -140.0, 2.35, 0.0])
    assert lab.igbp.tolist() == [16, 2, 0, 13, 15]  # barren Sahara, Amazon forest, ocean, Paris urban, ice
    assert lab.group.tolist() == [0, 1, 0, 2, 0]
    assert lab.koppen.tolist() == [1, 0, 5, 2, 4]  # B, A, open water, C, E


def test_labels_match_the_rasters_read_whole_by_pillow():
    locs = load_locations().sample(2000, random_state=0)
    lat, lon = locs["lat"].to_numpy(), locs["lon"].to_numpy()
    modis = np.asarray(Image.open(asset_path("modis_landcover")))
    row, col = np.floor((90 - lat) / 0.05).astype(int).clip(0, 3599), np.floor((lon + 180) / 0.05).astype(int) % 7200
    np.testing.assert_array_equal(igbp_at(lat, lon), modis[row, col])
    with trusted_large_images(), Image.open(asset_path("koppen_geiger")) as im:
        band = np.asarray(im.crop((0, 4000, 43200, 4600)))  # rows 4000..4599: 56.7 N .. 51.7 N
    r, c = np.floor((90 - lat) * 120).astype(int), np.floor((lon + 180) * 120).astype(int) % 43200
    sel = (r >= 4000) & (r < 4600) & (band[(r - 4000).clip(0, 599), c] > 0)
    assert sel.sum() > 50
    kg, filled = koppen_at(lat[sel], lon[sel])
    np.testing.assert_array_equal(kg, band[r[sel] - 4000, c[sel]] - 1)
    assert not filled.any()


def test_crop_scene_label_is_the_majority_of_the_crop():
    """Crop majority: Sahara barren, open Pacific water, Amazon forest; and equal to a brute-force count."""
    from geomtl_core.data.proxy.labels import crop_landcover
    from geomtl_core.data.proxy.world import destinations, offsets_km

    lat, lon = np.array([23.0, -30.0, -3.0, 48.85]), np.array([25.0, -140.0, -60.0, 2.35])
    igbp, group = crop_landcover(lat, lon, fov_km=300.0)
    assert igbp[:3].tolist() == [16, 0, 2] and group[:3].tolist() == [0, 0, 1]
    dx, dy = offsets_km(300.0, 8)
    glat, glon = destinations(lat[3:], lon[3:], dx, dy)
    counts = np.bincount(igbp_at(glat.ravel(), glon.ravel()), minlength=17)
    assert igbp[3] == counts.argmax()
    assert group[3] == np.bincount(IGBP_TO_GROUP[igbp_at(glat.ravel(), glon.ravel())], minlength=3).argmax()


def test_export_reads_back_through_the_mp16_readers(exported):
    out, cfg, _info = exported
    expected = labelled_locations(cfg)
    seen = []
    for split in ("train", "val", "test"):
        meta = read_metadata(out / f"{split}.csv")
        src = open_source(out / split)
        assert sorted(src.ids.tolist()) == sorted(meta["img_id"].tolist())
        ref = expected.set_index("img_id").loc[meta["img_id"]]
        np.testing.assert_allclose(meta[["lat", "lon"]].to_numpy(), ref[["lat", "lon"]].to_numpy(), atol=1e-9)
        assert (meta["s365"].to_numpy() == ref["igbp"].to_numpy()).all()  # centre pixel
        assert (meta["s16"].to_numpy() == ref["scene_igbp"].to_numpy()).all()  # crop majority
        assert (meta["s3"].to_numpy() == ref["scene_group"].to_numpy()).all()
        assert (meta["kg"].to_numpy() == ref["koppen"].to_numpy()).all()
        onehot = meta[["p_indoor", "p_natural", "p_urban"]].to_numpy()
        assert (onehot.argmax(1) == meta["s3"].to_numpy()).all() and (onehot.sum(1) == 1).all()
        k = 0
        img_id, data = src.read(k)
        row = meta.set_index("img_id").loc[img_id]
        crop = cut(load_world(), row["lat"], row["lon"], cfg.fov_km, cfg.size)[0]
        decoded = simplejpeg.decode_jpeg(data)
        assert decoded.shape == (32, 32, 3) and np.abs(decoded.astype(float) - crop).mean() < 6
        seen += meta["img_id"].tolist()
    stored = json.loads((out / "proxy.json").read_text())
    leak = stored["leakage"]
    assert len(seen) == len(set(seen)) == len(expected) == leak["train"] + leak["val"] + leak["test"]
    assert 200 < len(expected) < 400 and leak["max_shared_px_held"] == 0  # some left out by the split
    assert stored["counts"]["splits"] == {s: int((expected["split"] == s).sum()) for s in ("train", "val", "test")}
    assert set(stored["assets"]) >= {"bmng", "koppen_geiger"} and stored["config"]["seed"] == 3


def test_splits_disjoint_by_coordinates_and_seeded():
    locs = load_locations()
    lat, lon = locs["lat"].to_numpy(), locs["lon"].to_numpy()
    s = assign_splits(lat, lon, seed=0)
    frac = np.bincount(s, minlength=3) / len(s)
    np.testing.assert_allclose(frac, [0.8, 0.1, 0.1], atol=0.01)
    per_coord = pd.DataFrame({"lat": lat, "lon": lon, "s": s})
    assert (per_coord.groupby(["lat", "lon"])["s"].nunique() == 1).all()
    assert per_coord.duplicated(["lat", "lon"]).sum() > 1000  # the gallery does hold duplicates
    np.testing.assert_array_equal(s, assign_splits(lat, lon, seed=0))
    perm = np.random.default_rng(1).permutation(len(lat))[:5000]
    np.testing.assert_array_equal(s[perm], assign_splits(lat[perm], lon[perm], seed=0))  # order/subset free
    assert (s != assign_splits(lat, lon, seed=1)).mean() > 0.1


def test_bad_inputs_raise_clear_errors(world):
    with pytest.raises(ValueError, match="fov_km"):
        cut(world, 0.0, 0.0, fov_km=0, size=64)
    with pytest.raises(ValueError, match="size"):
        cut(world, 0.0, 0.0, fov_km=100, size=4)
    with pytest.raises(InvalidCoordinatesError):
        cut(world, 95.0, 0.0)
    with pytest.raises(InvalidCoordinatesError):
        cut(world, [0.0, np.nan], [0.0, 0.0])
    with pytest.raises(ValueError, match="fractions"):
        assign_splits(np.zeros(2), np.zeros(2), fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="fov_km"):
        export_proxy("unused", ProxyConfig(n=5, fov_km=-1), progress=False)


def test_figures_and_cli(exported, tmp_path, world):
    from geomtl_core.cli import main
    from geomtl_core.compendium.proxy_plots import plot_samples, plot_split_map

    out, cfg, _ = exported
    meta = read_metadata(out / "test.csv").head(6)
    imgs = cut(world, meta["lat"], meta["lon"], cfg.fov_km, cfg.size)
    assert len(plot_samples(imgs, meta).axes) == 6
    assert plot_split_map(labelled_locations(cfg)).axes
    assert main(["data", "proxy", "--out", str(tmp_path / "p"), "--n", "20", "--size", "16", "--quiet"]) == 0
    assert (tmp_path / "p" / "proxy.json").exists()
    assert main(["data", "proxy", "--out", str(tmp_path / "q"), "--n", "20", "--size", "4", "--quiet"]) == 2
    assert main(["data", "folds", str(tmp_path / "p"), "--k", "10"]) == 0  # the CLI's folds: the library's
    assert (tmp_path / "p" / "folds" / "k9" / "test.csv").read_text() == (tmp_path / "p" / "test.csv").read_text()


def _held_pixels_read_by_training(lat, lon, split, fov_km, size):
    """Per val/test location, how many of its crop's source pixels a training crop also reads, from footprints
    computed here for the two groups separately (not the split's own object)."""
    from geomtl_core.data.proxy.footprints import Footprints

    held = np.flatnonzero(split > 0)
    train_px = Footprints.of_crops(lat[split == 0], lon[split == 0], fov_km, size)
    read = train_px.marked(np.ones(len(train_px), bool))
    held_px = Footprints.of_crops(lat[held], lon[held], fov_km, size)
    return np.add.reduceat(read[held_px.pixels].astype(int), held_px.indptr[:-1])


def test_a_footprint_holds_every_source_pixel_its_crop_reads():
    """A crop cut from a world whose only bright pixels lie outside its footprint is black, and bright where only
    its footprint is bright: the footprint is exactly what the crop can read. Catches a footprint that misses a
    bilinear neighbour (the east or south one), the longitude wrap or a crop's high-latitude widening."""
    from geomtl_core.data.proxy.footprints import Footprints
    from geomtl_core.data.proxy.world import World

    h, w = 90, 180
    lat, lon = np.array([0.0, 61.0, -35.0, 10.0]), np.array([179.5, 20.0, -60.0, -179.9])
    fp = Footprints.of_crops(lat, lon, 900.0, 16, shape=(h, w))
    for i in range(len(lat)):
        inside = np.zeros(h * w, bool)
        inside[fp.pixels[fp.indptr[i]:fp.indptr[i + 1]]] = True
        outside = World(np.repeat(np.where(inside, 0, 255).astype(np.uint8).reshape(h, w, 1), 3, axis=2))
        assert cut(outside, lat[i], lon[i], 900.0, 16).max() == 0
        only = World(np.repeat(np.where(inside, 255, 0).astype(np.uint8).reshape(h, w, 1), 3, axis=2))
        assert cut(only, lat[i], lon[i], 900.0, 16).min() == 255
    assert fp.sizes()[1] > fp.sizes()[0]  # at 61 N a pixel is half as wide: the crop reads more of them


@pytest.mark.slow
def test_default_split_is_spread_and_pixel_disjoint():
    """The default export's test (and val) split: >= 80 (val >= 80) five-degree blocks, none above 8% of the
    split; no val or test crop shares a source pixel with a training crop (footprints recomputed per group);
    and at least 70% of the training cells' images kept (book/method.md's criterion). Catches the old 50 km
    radius buffer (99% of test crops overlapped a training crop), an exclusion applied to test only, and a crop
    geometry that drops most of the training data."""
    from geomtl_core.data.proxy.export import crop_overlap
    from geomtl_core.data.spatial_split import spatial_split
    from geomtl_core.geo.stats import spatial_blocks

    cfg = ProxyConfig()
    locs = load_locations()
    lat, lon = locs["lat"].to_numpy(), locs["lon"].to_numpy()
    args = (cfg.seed, cfg.fractions, cfg.split_grid_deg, cfg.buffer_km, cfg.max_block_share)
    split = spatial_split(lat, lon, *args, overlap=crop_overlap(locs, cfg))
    for s, min_blocks in ((2, 80), (1, 80)):
        counts = np.bincount(spatial_blocks(lat[split == s], lon[split == s]))
        assert len(counts) >= min_blocks and counts.max() / counts.sum() <= 0.08
    assert _held_pixels_read_by_training(lat, lon, split, cfg.fov_km, cfg.size).max() == 0
    cells = spatial_split(lat, lon, cfg.seed, cfg.fractions, cfg.split_grid_deg, 0.0, 1.0)
    assert (split == 0).sum() >= 0.7 * (cells == 0).sum() and (split == 2).sum() > 5_000


@pytest.mark.slow
def test_spatial_folds_test_every_kept_location_once_and_contain_the_split():
    """Ten folds over the locations the default split kept: every location is tested in exactly one fold, by
    whole grid cells (a cell's locations share their fold); each fold's val and test share no source pixel with
    its training crops and keep the block cap; and the last fold *is* the split (so runs on the split are one
    fold). Catches folds that overlap or leave locations untested, an exclusion skipped for folds, and a slicing
    that does not line up with the split's fractions."""
    from geomtl_core.data.proxy.export import crop_overlap
    from geomtl_core.data.spatial_split import cell_uniform, spatial_folds, spatial_split
    from geomtl_core.geo.stats import spatial_blocks

    cfg = ProxyConfig()
    locs = load_locations().iloc[::4].reset_index(drop=True)  # a quarter of the gallery: the same code, faster
    lat, lon = locs["lat"].to_numpy(), locs["lon"].to_numpy()
    args = (cfg.seed, cfg.fractions, cfg.split_grid_deg, cfg.buffer_km, cfg.max_block_share)
    split = spatial_split(lat, lon, *args, overlap=crop_overlap(locs, cfg))
    kept = split >= 0
    lat, lon, split = lat[kept], lon[kept], split[kept]
    folds = spatial_folds(lat, lon, 10, cfg.seed, cfg.split_grid_deg, cfg.buffer_km, cfg.max_block_share,
                          overlap=crop_overlap(locs[kept].reset_index(drop=True), cfg))
    np.testing.assert_array_equal(folds[-1], split)
    tested = (folds == 2).sum(axis=0)
    assert tested.max() == 1 and tested.mean() > 0.7  # the caps and exclusions leave some untested, never twice
    cell = cell_uniform(lat, lon, cfg.seed, cfg.split_grid_deg)
    for j in (0, 4):
        assert np.unique(np.floor(cell[folds[j] == 2] * 10)).tolist() == [j]
        for s in (1, 2):
            counts = np.bincount(spatial_blocks(lat[folds[j] == s], lon[folds[j] == s]))
            assert counts.max() <= max(1, int(cfg.max_block_share * counts.sum()))
        assert _held_pixels_read_by_training(lat, lon, folds[j], cfg.fov_km, cfg.size).max() == 0, f"fold {j}"
    with pytest.raises(InputError, match="k must be at least 3"):
        spatial_folds(lat, lon, 2)


def test_written_folds_share_no_source_pixel_between_training_and_held_out(exported):
    """Every fold that ``write_folds`` writes for a proxy export: no validation or test crop shares a source
    pixel with a training crop of its fold (footprints recomputed from the fold's CSVs), and ``folds.json``
    records the same (largest overlap 0, images kept and dropped, the nearest-training oracle). Catches the
    earlier 50 km radius buffer between crop centres (crops 250 km wide overlap across it), folds written
    without the export's crop geometry, and diagnostics that disagree with the written folds."""
    from geomtl_core.data.folds import write_folds

    out, cfg, _ = exported
    info = write_folds(out, 10, cfg.seed, cfg.split_grid_deg, cfg.buffer_km, cfg.max_block_share)
    assert info["benchmark"] == "pixel-disjoint-v1" and info["args"]["pixel_disjoint"]["fov_km"] == cfg.fov_km
    for j in range(10):
        parts = [read_metadata(out / "folds" / f"k{j}" / f"{s}.csv") for s in ("train", "val", "test")]
        lat = np.concatenate([p["lat"].to_numpy() for p in parts])
        lon = np.concatenate([p["lon"].to_numpy() for p in parts])
        split = np.repeat([0, 1, 2], [len(p) for p in parts])
        assert _held_pixels_read_by_training(lat, lon, split, cfg.fov_km, cfg.size).max() == 0, f"fold {j}"
        leak = info["leakage"][str(j)]
        assert leak["max_shared_px_held"] == 0 and leak["train"] == len(parts[0])
        assert leak["eligible_train"] == leak["train"] + leak["dropped_train"]
        assert set(leak["oracle_nearest_train"]) == {"1", "25", "200", "750", "2500"}


def test_written_folds_read_through_the_pool_and_are_reused(exported):
    """``write_folds`` on an export: the last fold's CSVs are the export's own, a fold's config override reads its
    images from the pool of links, and a second call rewrites nothing. Catches a pool that misses a split's
    shards and folds rebuilt (and runs invalidated) on every call."""
    from geomtl_core.config import ExperimentConfig
    from geomtl_core.data.folds import fold_overrides, write_folds
    from geomtl_core.data.loaders import load_meta, split_paths

    out, cfg, _ = exported
    k = round(1 / cfg.fractions[2])
    info = write_folds(out, k, cfg.seed, cfg.split_grid_deg, cfg.buffer_km, cfg.max_block_share)
    assert info["tested_once"] and len(info["sizes"]) == k
    for s in ("train", "val", "test"):
        assert (out / "folds" / f"k{k - 1}" / f"{s}.csv").read_text() == (out / f"{s}.csv").read_text()
    run = ExperimentConfig.from_dict({"data": {"root": str(out), **fold_overrides(0)["data"]}})
    images, _ = split_paths(run, "test")
    ids = set(open_source(images).ids)
    assert len(ids) == sum(len(read_metadata(out / f"{s}.csv")) for s in ("train", "val", "test"))
    assert set(load_meta(run, "test")["img_id"]) <= ids and len(load_meta(run, "test")) == info["sizes"]["0"]["test"]
    stamp = (out / "folds" / "k0" / "test.csv").stat().st_mtime_ns
    assert write_folds(out, k, cfg.seed, cfg.split_grid_deg, cfg.buffer_km, cfg.max_block_share) == info
    assert (out / "folds" / "k0" / "test.csv").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("scale", ["smoke", "default", "full"])
def test_no_tested_fold_holds_a_cell_any_choice_was_made_on(scale):
    """The folds a scale tests share no grid cell with the export's validation split, on which every setting is
    chosen (recipe, epochs, scene weight, granularity, retrieval settings): cells recomputed from the locations.
    Catches a scale that tests fold k − 2 (whose test cells are the export's validation cells), as the full
    scale's ``range(10)`` did."""
    from geomtl_core.compendium.scales import scale_params
    from geomtl_core.data.spatial_split import spatial_folds, spatial_split

    cfg, p = ProxyConfig(), scale_params(scale)
    locs = load_locations()
    lat, lon = locs["lat"].to_numpy(), locs["lon"].to_numpy()
    k = round(1 / cfg.fractions[2])
    chosen_on = spatial_split(lat, lon, cfg.seed, cfg.fractions, cfg.split_grid_deg, 0.0, 1.0) == 1
    cells = spatial_folds(lat, lon, k, cfg.seed, cfg.split_grid_deg, 0.0, 1.0)
    for j in p["cv"]["folds"]:
        assert not (chosen_on & (cells[j] == 2)).any(), f"{scale}: fold {j} tests cells that chose its settings"
