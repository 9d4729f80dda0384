"""``geomtl predict`` and ``geomtl_core.inference.predict.predict``: real photos, EXIF truth, bad files,
odd formats, maps."""

import csv
import dataclasses
import io
import json
import shutil
import struct
import sys
import zlib
from pathlib import Path

import geomtl_core  # noqa: F401
from geomtl_core.cli import main
from geomtl_core.config import ExperimentConfig
from geomtl_core.data.exif import parse_gps
from geomtl_core.data.images import eval_transform, to_tensor
from geomtl_core.geo.geodesy import haversine_km
from geomtl_core.inference.predict import Predictor, predict
from geomtl_core.models.bundle import load_bundle
from geomtl_core.training.trainer import train

import numpy as np
import piexif
import pytest
import simplejpeg
import torch
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).parent))
from toydata import make_toy_dataset


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    """A tiny trained bundle with three partitionings and the s3 scene task (a few seconds)."""
    tmp = tmp_path_factory.mktemp("predict")
    root = make_toy_dataset(tmp / "toy", n_train=200, n_val=40)
    cfg = ExperimentConfig.from_dict({
        "data": {"root": str(root), "image_size": 32, "workers": 0},
        "partition": {"tau_min": 5, "tau_max": [200, 100, 60]},
        "model": {"neck_units": 32},
        "train": {"epochs": 1, "batch_size": 32},
    })
    train(cfg, tmp / "bundle", verbose=0)
    return tmp / "bundle"


@pytest.fixture(scope="module")
def bundle(bundle_dir):
    return load_bundle(bundle_dir)


@pytest.fixture(scope="module")
def landmarks(shared):
    """(file, lat, lon) of every landmark photo present (rows marked MISSING skipped)."""
    folder = shared / "photos" / "landmarks"
    rows = []
    for line in (folder / "landmarks.tsv").read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        if len(cols) < 5 or "MISSING" in cols[4] or not cols[3]:
            continue
        rows.append((folder / cols[3], float(cols[1]), float(cols[2])))
    assert len(rows) >= 20
    return rows


def _dms(x: float) -> tuple:
    x = abs(x)
    d = int(x)
    m = int((x - d) * 60)
    s = (x - d - m / 60) * 3600
    return ((d, 1), (m, 1), (round(s * 10000), 10000))


def gps_exif(lat: float, lon: float, **gps_overrides) -> bytes:
    gps = {piexif.GPSIFD.GPSLatitudeRef: b"N" if lat >= 0 else b"S", piexif.GPSIFD.GPSLatitude: _dms(lat),
           piexif.GPSIFD.GPSLongitudeRef: b"E" if lon >= 0 else b"W", piexif.GPSIFD.GPSLongitude: _dms(lon)}
    for k, v in gps_overrides.items():
        tag = getattr(piexif.GPSIFD, k)
        if v is None:
            gps.pop(tag)
        else:
            gps[tag] = v
    return piexif.dump({"0th": {}, "Exif": {}, "GPS": gps, "1st": {}})


def _jpeg(seed: int = 0, shape=(60, 80)) -> bytes:
    img = np.random.default_rng(seed).integers(0, 255, (*shape, 3)).astype(np.uint8)
    return simplejpeg.encode_jpeg(img, quality=90)


def _run_json(capsys, argv) -> tuple[int, list[dict]]:
    rc = main([*argv, "--json", "--no-progress"])
    return rc, json.loads(capsys.readouterr().out)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _assert_same_result(a: dict, b: dict) -> None:
    """Same classes, tokens, coordinates, places and labels; probabilities equal up to float32 noise."""
    floats = ("score", "cells", "scene")
    assert {k: v for k, v in a.items() if k not in floats} == {k: v for k, v in b.items() if k not in floats}
    assert a["score"] == pytest.approx(b["score"], rel=1e-5)
    for name in a["cells"]:
        assert [(c["class"], c["token"], c["lat"], c["lon"]) for c in a["cells"][name]] == \
               [(c["class"], c["token"], c["lat"], c["lon"]) for c in b["cells"][name]]
        assert [c["p"] for c in a["cells"][name]] == pytest.approx([c["p"] for c in b["cells"][name]], rel=1e-5)
    for task, v in a["scene"].items():
        assert (v["class"], v["label"]) == (b["scene"][task]["class"], b["scene"][task]["label"])
        assert v["p"] == pytest.approx(b["scene"][task]["p"], rel=1e-5)


def test_landmark_photos_predict_with_places(bundle_dir, bundle, landmarks, capsys):
    """Every real landmark photo gets a place and country, and the numbers the model's own logits give,
    worked out here: per partitioning the top-k cells are the k largest softmax probabilities (best first,
    summing to <= 1) with their class coordinates and tokens; lat/lon is the class mean of the fine cell whose
    product of its own and its ancestors' probabilities is largest (f*); the scene is the argmax. The same
    results come back in batches of 1 as in one batch of 32, and twice over."""
    files = [f for f, _, _ in landmarks]
    rc, res = _run_json(capsys, ["predict", str(bundle_dir), *[str(f) for f in files], "--top-k", "3"])
    assert rc == 0 and [r["path"] for r in res] == [str(f) for f in files]  # input order kept

    predictor = Predictor(bundle)
    x = torch.stack([predictor.load(f).image for f in files])
    with torch.no_grad():
        out = bundle.model(x, training=False)
    probs = {t: _softmax(np.asarray(v.detach().cpu().numpy(), np.float64)) for t, v in out.items()}
    parts, chain = bundle.parts, bundle.hierarchy.matrix  # chain[f, k]: fine cell f's ancestor in partitioning k
    assert len(parts) == 3 and (chain >= 0).all()
    fstar = np.prod([probs[part.name][:, chain[:, k]] for k, part in enumerate(parts)], axis=0)

    for j, r in enumerate(res):
        assert r["error"] is None and r["place"] and r["country"] and r["error_km"] is None
        best = int(fstar[j].argmax())
        assert r["method"] == "hierarchy" and r["score"] == pytest.approx(fstar[j, best], rel=1e-5)
        assert (r["lat"], r["lon"]) == pytest.approx((parts[-1].lat_mean[best], parts[-1].lon_mean[best]), abs=1e-9)
        assert list(r["cells"]) == [part.name for part in parts]
        for part in parts:
            cells, p = r["cells"][part.name], probs[part.name][j]
            assert [c["class"] for c in cells] == np.argsort(-p, kind="stable")[:3].tolist()
            ps = [c["p"] for c in cells]
            assert ps == sorted(ps, reverse=True) and sum(ps) <= 1 + 1e-9
            assert ps == pytest.approx(np.sort(p)[::-1][:3], rel=1e-5)
            for c in cells:
                assert c["token"] == part.tokens[c["class"]]
                assert (c["lat"], c["lon"]) == (part.lat_mean[c["class"]], part.lon_mean[c["class"]])
        for task in bundle.scene_tasks:
            k = int(probs[task][j].argmax())
            assert r["scene"][task]["class"] == k and r["scene"][task]["label"] == bundle.class_names(task)[k]
            assert r["scene"][task]["p"] == pytest.approx(probs[task][j, k], rel=1e-5)
        assert r["scene"]["s3"]["label"] in ("indoor", "natural", "urban")

    one_by_one = predict(bundle, files, top_k=3, batch_size=1)
    again = predict(bundle, files, top_k=3, batch_size=1)
    assert one_by_one == again  # deterministic
    assert len(one_by_one) == len(res)
    for a, b in zip(one_by_one, res, strict=True):  # batch size makes no difference
        _assert_same_result(a, b)


def test_exif_truth_gives_error_column(bundle_dir, landmarks, tmp_path):
    """Copies with the true position in EXIF GPS: error_km = haversine(true, predicted), plus a summary."""
    folder = tmp_path / "gps"
    folder.mkdir()
    truth = {}
    for f, lat, lon in landmarks:
        dst = folder / f.name
        piexif.insert(gps_exif(lat, lon), f.read_bytes(), str(dst))
        truth[str(dst)] = (lat, lon)
    out = tmp_path / "pred.csv"
    assert main(["predict", str(bundle_dir), str(folder), "--csv", str(out), "--no-progress"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == len(landmarks)
    for row in rows:
        lat, lon = truth[row["path"]]
        assert float(row["true_lat"]) == pytest.approx(lat, abs=1e-6)
        assert float(row["true_lon"]) == pytest.approx(lon, abs=1e-6)
        expected = haversine_km(lat, lon, float(row["pred_lat"]), float(row["pred_lon"]))
        assert abs(float(row["error_km"]) - expected) < 0.01
        assert row["place"] and row["country"] and row["error"] == "" and row["s3"] and row["truth"] == "exif"
        assert row["img_id"] == Path(row["path"]).name


def test_bad_files_in_a_folder(bundle_dir, tmp_path, capsys):
    """A corrupt JPEG and a zero-byte JPEG: two clear errors, the rest predicted, status 1. A text file in the
    folder is not an image: skipped and listed once, not a failure (caught: it was counted as a failed image)."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for k in range(4):
        (folder / f"good_{k}.jpg").write_bytes(_jpeg(k))
    good = _jpeg(9)
    (folder / "corrupt.jpg").write_bytes(good[: len(good) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image\n")
    (folder / ".hidden.jpg").write_text("skipped")
    (folder / "photo_without_suffix").write_bytes(_jpeg(5))  # recognised by its content
    rc = main(["predict", str(bundle_dir), str(folder), "--batch-size", "3", "--json", "--no-progress"])
    captured = capsys.readouterr()
    res = json.loads(captured.out)
    assert rc == 1 and len(res) == 7 and "notes.txt" not in {Path(r["path"]).name for r in res}
    assert captured.err.count("notes.txt") == 1 and "skipped 1 files that are not images" in captured.err
    assert "5 of 7 images predicted, 2 failed" in captured.err
    errors = {Path(r["path"]).name: r["error"] for r in res if r["error"]}
    assert set(errors) == {"corrupt.jpg", "empty.jpg"}
    assert "truncated" in errors["corrupt.jpg"] and "0 bytes" in errors["empty.jpg"]
    assert main(["predict", str(bundle_dir), str(folder / "notes.txt"), "--no-progress"]) == 2  # alone: no photo
    assert all(r["lat"] is not None for r in res if not r["error"])


def test_usage_errors_exit_2(tmp_path, bundle_dir):
    assert main(["predict", str(tmp_path / "no_bundle"), str(tmp_path)]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(bundle_dir), str(tmp_path / "empty")]) == 2
    assert main(["predict", str(bundle_dir), str(tmp_path), "--top-k", "0"]) == 2


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(_jpeg(1, (16, 16)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


def test_odd_formats_and_guards(bundle, tmp_path):
    """Grayscale, CMYK, RGBA, 16-bit PNG, rotated JPEG predict; huge headers are refused; a bad
    EXIF GPS is ignored with a warning; a missing file is a per-file error."""
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3)).astype(np.uint8))
    yy, xx = np.mgrid[0:48, 0:64]
    smooth = Image.fromarray(np.stack([xx * 4, yy * 5, 255 - xx * 2], axis=-1).astype(np.uint8))
    ramp = (np.arange(48 * 64).reshape(48, 64) * 20).astype(np.uint16)
    rot = tmp_path / "rotated.jpg"
    _save(smooth, rot, quality=95, exif=piexif.dump({"0th": {piexif.ImageIFD.Orientation: 6}}))
    files = {
        "gray": _save(rgb.convert("L"), tmp_path / "gray.jpg"),
        "cmyk": _save(rgb.convert("CMYK"), tmp_path / "cmyk.jpg"),
        "rgba": _save(rgb.convert("RGBA"), tmp_path / "rgba.png"),
        "png16": _save(Image.fromarray(ramp), tmp_path / "deep.png"),
        "rotated": rot,
    }
    bad_gps = {"no_ref": gps_exif(48.8, 2.3, GPSLatitudeRef=None),
               "zero_den": gps_exif(48.8, 2.3, GPSLatitude=((48, 0), (0, 1), (0, 1))),
               "range": gps_exif(48.8, 2.3, GPSLongitude=((200, 1), (0, 1), (0, 1)))}
    for name, exif in bad_gps.items():
        files[name] = tmp_path / f"{name}.jpg"
        piexif.insert(exif, _jpeg(2), str(files[name]))
    (tmp_path / "huge.png").write_bytes(_png_header_only(20000, 20000))
    (tmp_path / "big.png").write_bytes(_png_header_only(9000, 9000))
    (tmp_path / "huge.jpg").write_bytes(_jpeg_claiming(20000, 20000))
    res = predict(bundle, [*files.values(), tmp_path / "huge.png", tmp_path / "big.png", tmp_path / "huge.jpg",
                           tmp_path / "missing.jpg"], top_k=2, batch_size=4)
    by = {Path(r["path"]).stem: r for r in res}
    for name in files:
        assert by[Path(files[name]).stem]["error"] is None, by[Path(files[name]).stem]
    for name in bad_gps:
        r = by[name]
        assert r["true_lat"] is None and r["error_km"] is None
        assert any("EXIF GPS ignored" in w for w in r["warnings"]), r["warnings"]
    assert "decompression bomb" in by["huge"]["error"] or "limit" in by["huge"]["error"]
    assert "64,000,000-pixel limit" in by["big"]["error"]
    assert "64,000,000-pixel limit" in next(r for r in res if r["path"].endswith("huge.jpg"))["error"]
    assert by["missing"]["error"] == "no such file"
    # the rotated JPEG is decoded upright, as Pillow's exif_transpose shows it
    p = Predictor(bundle)
    got = p.load(rot).image.numpy().astype(int)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(rot)).convert("RGB"))
    ref = eval_transform(p.cfg)(to_tensor(upright)).permute(1, 2, 0).numpy().astype(int)
    unrotated = eval_transform(p.cfg)(to_tensor(np.array(Image.open(rot)))).permute(1, 2, 0).numpy().astype(int)
    assert np.abs(got - ref).mean() < 3 < np.abs(got - unrotated).mean()


def test_without_hierarchy_uses_finest_partitioning(bundle, tmp_path):
    (tmp_path / "a.jpg").write_bytes(_jpeg(3))
    flat = dataclasses.replace(bundle, labels={**bundle.labels, "hierarchical": False})
    (r,) = predict(flat, tmp_path / "a.jpg", top_k=1)
    assert r["method"] == bundle.parts[-1].name
    assert (r["lat"], r["lon"]) == (r["cells"][r["method"]][0]["lat"], r["cells"][r["method"]][0]["lon"])


def test_parse_gps_cases():
    assert parse_gps({}) == (None, None)
    (lat, lon), w = parse_gps({1: b"S\x00", 2: ((33, 1), (51, 1), (2412, 100)), 3: "W", 4: ((70, 1), (0, 1), (0, 1))})
    assert w is None and lat == pytest.approx(-(33 + 51 / 60 + 24.12 / 3600)) and lon == -70
    assert "LongitudeRef" in parse_gps({1: "N", 2: (1, 0, 0), 4: (2, 0, 0)})[1]
    assert "expected N or S" in parse_gps({1: "X", 2: (1, 0, 0), 3: "E", 4: (2, 0, 0)})[1]
    assert "minutes" in parse_gps({1: "N", 2: (1, 75, 0), 3: "E", 4: (2, 0, 0)})[1]
    assert "placeholder" in parse_gps({1: "N", 2: (0, 0, 0), 3: "E", 4: (0, 0, 0)})[1]


def test_map_per_image(bundle_dir, tmp_path, landmarks, capsys):
    """--map with two images writes OUT_<stem>.png for each (three panels, dpi 40)."""
    folder = tmp_path / "two"
    folder.mkdir()
    for f, _, _ in landmarks[:2]:
        shutil.copy(f, folder / f.name)
    piexif.insert(gps_exif(landmarks[0][1], landmarks[0][2]), str(folder / landmarks[0][0].name))
    rc, res = _run_json(capsys, ["predict", str(bundle_dir), str(folder), "--map", str(tmp_path / "m.png"),
                                 "--map-dpi", "40"])
    assert rc == 0
    for r, (f, _, _) in zip(sorted(res, key=lambda r: r["path"]), sorted(landmarks[:2]), strict=True):
        out = tmp_path / f"m_{f.stem}.png"
        assert r["map"] == str(out) and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(io.BytesIO(out.read_bytes())) as im:
            assert im.height > im.width  # three stacked panels
