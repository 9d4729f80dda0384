"""Data layer: metadata readers, scene labels, shards, decoding and the pipeline."""

from geomtl_core.data.dataset import FaultLog, GeoImageDataset, build_labels, make_loader
from geomtl_core.data.images import ImageDecodeError, TransformConfig, decode_image
from geomtl_core.data.metadata import MetadataError, read_metadata
from geomtl_core.data.scenes import read_scene_hierarchy
from geomtl_core.data.shards import ShardError, index_shards, iter_shard, open_source, write_shards
from geomtl_core.geo.partitioning import build_partitionings

import msgpack
import numpy as np
import pandas as pd
import pytest
import simplejpeg


def _jpeg(seed, h=96, w=128):
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = rng.integers(0, 255, 3, dtype=np.uint8)
    img[h // 4 : h // 2, w // 4 : w // 2] = rng.integers(0, 255, (h // 4, w // 4, 3), dtype=np.uint8)
    return simplejpeg.encode_jpeg(img, quality=90)


@pytest.fixture
def dataset_dir(tmp_path):
    """200 JPEGs in 3 shards with GeoEstimation metadata around two clusters."""
    n = 200
    rng = np.random.default_rng(0)
    ids = [f"img_{k:04d}.jpg" for k in range(n)]
    images = [_jpeg(k) for k in range(n)]
    write_shards(zip(ids, images, strict=True), tmp_path / "shards", per_shard=80)
    lat = np.where(np.arange(n) < 120, 48.85, -33.87) + rng.normal(0, 0.5, n)
    lon = np.where(np.arange(n) < 120, 2.35, 151.2) + rng.normal(0, 0.5, n)
    meta = pd.DataFrame({"IMG_ID": ids, "AUTHOR": "a", "LAT": lat, "LON": lon, "S3_Label": np.arange(n) % 3,
                         "S16_Label": np.arange(n) % 16, "S365_Label": np.arange(n) % 365})
    meta.to_csv(tmp_path / "meta.csv", index=False)
    return tmp_path, ids, images


def test_im2gps3k_and_yfcc4k_read_with_correct_coordinates(shared):
    """Spot checks: the first Im2GPS3k row, and YFCC4k's lon-before-lat columns not swapped."""
    m = read_metadata(shared / "geoestimation/meta/im2gps3k_places365.csv")
    assert m.attrs["layout"] == "geoestimation" and len(m) == 2997
    row = m.iloc[0]
    assert row.img_id == "1000269685_e60e9cdfb4_1125_78841376@N00.jpg"
    assert (row.lat, row.lon, row.s3, row.s16, row.s365) == (32.325436, -64.764404, 2, 12, 353)
    y = read_metadata(shared / "testsets/yfcc4k.csv")
    assert y.attrs["layout"] == "yfcc100m" and len(y) == 4536
    first = y.iloc[0]
    assert first.img_id == "10201275523.jpg" and (first.lat, first.lon) == (43.649708, -79.365637)  # Toronto
    y26 = read_metadata(shared / "testsets/yfcc25600_places365.csv")
    assert y26.attrs["layout"] == "yfcc25600" and len(y26) == 25600 and y26.iloc[0].lat == 46.778991


def test_metadata_errors_name_columns_rows_and_ids(tmp_path):
    """Missing columns, bad coordinates and duplicate ids are clear errors."""
    p = tmp_path / "m.csv"
    p.write_text("IMG_ID,LAT\na,1\n")
    with pytest.raises(MetadataError, match=r"IMG_ID,LAT,LON"):
        read_metadata(p)
    p.write_text("IMG_ID,LAT,LON\na,1,2\nb,95,2\nc,,3\n")
    with pytest.raises(MetadataError, match="rows: b, c"):
        read_metadata(p)
    p.write_text("IMG_ID,LAT,LON\na,1,2\na,3,4\n")
    with pytest.raises(MetadataError, match="duplicate image ids"):
        read_metadata(p)


def test_scene_hierarchy_agrees_with_im2gps3k_labels(shared):
    """365 -> 3/16 mapping: S3 from the published 3-way probabilities is exact; from hard S365
    labels it agrees on ~90% (S3) and ~82% (S16), since GeoEstimation used 365-way probabilities."""
    h = read_scene_hierarchy(shared / "places365/scene_hierarchy_places365.csv")
    assert h.level1.shape == (365, 3) and h.level2.shape == (365, 16)
    assert (h.level1.sum(1) >= 1).all() and (h.level1.sum(1) > 1).any()  # some categories in several classes
    m = read_metadata(shared / "geoestimation/meta/im2gps3k_places365.csv")
    probs3 = m[["p_indoor", "p_natural", "p_urban"]].to_numpy()
    assert (probs3.argmax(1) == m.s3).mean() == 1.0
    agree3 = (h.labels_from_s365(m.s365, 3) == m.s3).mean()
    agree16 = (h.labels_from_s365(m.s365, 16) == m.s16).mean()
    assert 0.88 < agree3 < 0.92 and 0.80 < agree16 < 0.84, (agree3, agree16)
    p = np.eye(365)[m.s365]
    np.testing.assert_allclose(h.probabilities(p, 3).sum(1), 1.0)


def test_shards_round_trip_byte_identical(dataset_dir):
    """Images written to shards read back byte-identical, ids and order preserved."""
    root, ids, images = dataset_dir
    idx = index_shards(root / "shards")
    assert len(idx.files) == 3 and idx.ids.tolist() == ids
    for k in (0, 79, 80, 199):
        assert idx.read(k) == (ids[k], images[k])
    streamed = [(r["id"], r["image"]) for f in idx.files for _, r in iter_shard(f)]
    assert streamed == list(zip(ids, images, strict=True))
    assert index_shards(root / "shards").ids.tolist() == ids  # from the cache


def test_a_half_written_index_cache_is_scanned_again_and_rewritten_whole(tmp_path):
    """An index cache cut short (its writer killed mid-write, as a killed run's evaluation once left it) is read as
    no cache: the shards are scanned again and the cache rewritten whole, with no temporary file left beside it.
    Catches a reader that fails on a truncated npz (``BadZipFile``), which made the resumed run crash in CI."""
    write_shards([(f"i{k}", _jpeg(k)) for k in range(5)], tmp_path, per_shard=10)
    cache = tmp_path / ".geomtl_index.npz"
    assert index_shards(tmp_path).ids.tolist() == [f"i{k}" for k in range(5)] and cache.exists()
    cache.write_bytes(cache.read_bytes()[:40])
    assert index_shards(tmp_path).ids.tolist() == [f"i{k}" for k in range(5)]
    assert np.load(cache)["ids"].tolist() == [f"i{k}" for k in range(5)]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [".geomtl_index.npz"]


def test_unparseable_shard_names_the_file(tmp_path):
    """A shard that is not msgpack at all is an error naming the file."""
    bad = tmp_path / "shard_00000.msg"
    bad.write_bytes(b"\xc1" * 100)  # 0xc1 is never valid msgpack
    with pytest.raises(ShardError, match=r"shard_00000\.msg"):
        index_shards(tmp_path)


def test_truncated_shard_keeps_complete_records(tmp_path, caplog):
    """A shard cut mid-record keeps the records before the cut and logs the loss."""
    write_shards([(f"i{k}", _jpeg(k)) for k in range(5)], tmp_path, per_shard=10)
    f = tmp_path / "shard_00000.msg"
    f.write_bytes(f.read_bytes()[:-100])
    idx = index_shards(tmp_path, cache=False)
    assert idx.ids.tolist() == ["i0", "i1", "i2", "i3"]
    assert "truncated shard" in caplog.text


def test_decode_guards():
    """Empty, corrupt, truncated and oversized images are refused with a reason."""
    good = _jpeg(1)
    assert decode_image(good).shape == (96, 128, 3)
    assert min(decode_image(good, min_side=40).shape[:2]) >= 40
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_image(b"")
    with pytest.raises(ImageDecodeError):
        decode_image(good[: len(good) // 2])
    with pytest.raises(ImageDecodeError):
        decode_image(b"not an image at all")
    with pytest.raises(ImageDecodeError, match="pixel limit"):
        decode_image(good, max_pixels=1000)


def _dataset(root, train, faults=None, size=32):
    meta = read_metadata(root / "meta.csv")
    parts = build_partitionings(meta.lat, meta.lon, tau_max=(100, 40), tau_min=5)
    for p, n in zip(parts, ("coarse", "fine"), strict=True):
        p.name = n
    src = open_source(root / "shards")
    labels = build_labels(src.ids, meta, parts, scene_columns=("s3", "s16"))
    return GeoImageDataset(src, labels, TransformConfig(size=size), train=train, faults=faults), labels


def test_pipeline_batches_have_fixed_shape_and_all_labels(dataset_dir):
    """Train batches: uint8 (B, S, S, 3) and one int label per partitioning and scene level."""
    root = dataset_dir[0]
    ds, labels = _dataset(root, train=True)
    rep = labels.report
    assert rep["images_without_metadata"] == 0 and rep["metadata_without_image"] == 0
    assert rep["usable"] == 200 - max(rep["outside_coarse"], rep["outside_fine"]) > 180  # counted, not lost
    loader = make_loader(ds, batch_size=32, shuffle=True, workers=2, drop_last=True)
    batches = list(loader)
    assert len(batches) == rep["usable"] // 32
    x, y = batches[0]
    assert x.shape == (32, 32, 32, 3) and x.dtype.is_floating_point is False
    assert set(y) == {"coarse", "fine", "s3", "s16"} and y["s3"].shape == (32,)
    ev = GeoImageDataset(ds.source, labels, TransformConfig(size=32), train=False, five_crop=True)
    assert ev[0][0].shape == (5, 32, 32, 3)


def test_corrupt_record_is_skipped_counted_and_epoch_completes(dataset_dir, tmp_path):
    """One corrupted JPEG in a shard: the epoch completes, its id is logged, all others are used."""
    root, ids, images = dataset_dir
    bad_id = ids[37]
    recs = [(i, img[:200] if i == bad_id else img) for i, img in zip(ids, images, strict=True)]
    shards = root / "shards"
    for f in shards.glob("*"):
        f.unlink()
    write_shards(recs, shards, per_shard=80)
    faults = FaultLog(tmp_path / "faults.tsv")
    ds, _ = _dataset(root, train=False, faults=faults)
    seen = []
    for k in range(len(ds)):
        ds[k]
        seen.append(k)
    assert len(seen) == len(ds) > 190
    entries = faults.entries(epoch=0)
    assert [e[1] for e in entries] == [bad_id]
    # every other record decodes fine
    good = [k for k in range(len(ds)) if ds.labels.img_id[k] != bad_id]
    assert all(ds.load(k).shape == (32, 32, 3) for k in good[:50])


def test_msgpack_record_without_image_is_skipped(tmp_path, caplog):
    """A record that is not {'id', 'image'} is skipped and logged, the rest indexed."""
    with (tmp_path / "shard_00000.msg").open("wb") as fh:
        fh.write(msgpack.packb({"id": "a", "image": _jpeg(0)}, use_bin_type=True))
        fh.write(msgpack.packb({"id": "b"}, use_bin_type=True))
        fh.write(msgpack.packb({"id": "c", "image": _jpeg(1)}, use_bin_type=True))
    assert index_shards(tmp_path, cache=False).ids.tolist() == ["a", "c"]
    assert "skipped" in caplog.text


def _jitter_range(x: np.ndarray, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel [low, high] that ColorJitter(strength) may output for the CHW image x, from its definition alone.

    Brightness b scales x; contrast c pulls towards the image's gray mean (after brightness: b*mu); saturation
    s pulls each pixel towards its own gray y = g.x (ITU-R 601 weights g, summing to 1). Worked out:
    out = b * (c * (s*x + (1-s)*y) + (1-c)*mu), which is linear in each of b, c, s separately, so over the
    box [1-strength, 1+strength]^3 it is extreme at one of the 8 corners. Clamping to 0-255 and rounding are
    monotone, so they keep the order: the output lies in round(clip(corners)).
    """
    g = np.array([0.299, 0.587, 0.114])
    xf = x.astype(np.float64)
    y = np.einsum("c,chw->hw", g, xf)[None]
    mu = float(g @ xf.mean(axis=(1, 2)))
    corners = [b * (c * (s * xf + (1 - s) * y) + (1 - c) * mu)
               for b in (1 - strength, 1 + strength) for c in (1 - strength, 1 + strength)
               for s in (1 - strength, 1 + strength)]
    return np.clip(np.min(corners, axis=0), 0, 255), np.clip(np.max(corners, axis=0), 0, 255)


def test_color_jitter_is_identity_at_zero_and_bounded():
    """Strength 0 leaves pixels unchanged; otherwise every pixel stays inside the range its factors in
    [1 - s, 1 + s] allow (derived in _jitter_range), the range is used, and a large jitter changes the image."""
    from geomtl_core.data.images import ColorJitter

    import torch

    rng = np.random.default_rng(0)
    images = [decode_image(_jpeg(3)).transpose(2, 0, 1), rng.integers(0, 256, (3, 24, 40), dtype=np.uint8),
              np.clip(rng.normal(128, 30, (3, 32, 32)), 0, 255).astype(np.uint8)]
    for img in images:
        x = torch.from_numpy(np.ascontiguousarray(img))
        assert torch.equal(ColorJitter(0.0)(x), x)
        for strength in (0.05, 0.2, 0.4):
            low, high = _jitter_range(img, strength)
            reach = np.maximum(high - img, img - low).max()  # the largest change the bound allows
            torch.manual_seed(int(strength * 100))
            biggest = 0.0
            for _ in range(100):
                y = ColorJitter(strength)(x)
                assert y.dtype == torch.uint8 and y.shape == x.shape
                out = y.numpy().astype(np.float64)
                outside = (out < low - 0.5 - 1e-3) | (out > high + 0.5 + 1e-3)
                assert not outside.any(), (strength, out[outside][:5], low[outside][:5], high[outside][:5])
                biggest = max(biggest, np.abs(out - img).max())
            assert biggest > 0.6 * reach, (strength, biggest, reach)  # draws reach towards the corners
    x = torch.from_numpy(np.ascontiguousarray(images[0]))
    torch.manual_seed(0)
    changes = [(ColorJitter(0.5)(x).int() - x.int()).abs().float().mean().item() for _ in range(10)]
    assert min(changes) > 1.0 and np.mean(changes) > 8.0, changes
