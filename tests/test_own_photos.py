"""Your own photos, end to end (issue 37, item 5): ``geomtl data shards`` turns a folder of geotagged photos into
the MP-16 on-disk format that ``geomtl train`` and ``geomtl evaluate --data`` read; bad files are skipped and
listed, bad input is refused before torch loads, an earlier output is kept, an interrupted run resumes."""

import csv
import io
import json
import shutil
import sys
from pathlib import Path

from geomtl_core.cli import main
from geomtl_core.data import own_photos
from geomtl_core.data.own_photos import ShardOptions, build_shards, split_photos, staging_path
from geomtl_core.data.shards import index_shards

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from cli_process import run_cli
from landmarks import landmark_rows


def _photo(path: Path, seed: int = 0, size: tuple[int, int] = (48, 32), gps: tuple | None = None,
           orientation: int | None = None) -> Path:
    """A random JPEG of ``size`` (width, height), with an EXIF GPS IFD ``(lat_ref, dms, lon_ref, dms)``."""
    img = Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    exif = Image.Exif()
    if gps is not None:
        exif[0x8825] = {1: gps[0], 2: gps[1], 3: gps[2], 4: gps[3]}
    if orientation is not None:
        exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, exif=exif)
    return path


def _rows(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open(encoding="utf-8")))


def _shard_ids(folder: Path) -> list[str]:
    return index_shards(folder, cache=False).ids.tolist()


@pytest.fixture
def landmark_copy(shared, tmp_path):
    """The shared landmark photos and landmarks.tsv copied, plus a text file, a broken JPEG that the TSV locates
    and a photo that it does not list."""
    src = shared / "photos" / "landmarks"
    folder = tmp_path / "photos"
    shutil.copytree(src, folder)
    (folder / "notes.txt").write_text("not a photo\n")
    (folder / "broken.jpg").write_bytes(bytes.fromhex("ffd8ffe000104a464946") + b"\0" * 40)
    with (folder / "landmarks.tsv").open("a", encoding="utf-8") as fh:
        fh.write("Broken\t10.0\t20.0\tbroken.jpg\t(1, 1)\t\n")
    _photo(folder / "trip" / "unlisted.jpg")
    return folder


def test_landmark_photos_become_shards_that_train_and_evaluate(shared, landmark_copy, tmp_path, capsys):
    """Catches shards or CSVs that `geomtl train`/`evaluate --data` cannot read, photos lost or duplicated between
    the TSV and the shards (counts equal the photos with coordinates, every id in one split's CSV and shards), a
    split left empty on a small input, bad files stopping the run or not listed, and EXIF GPS left in the shards."""
    expected = {p.name: (lat, lon) for p, lat, lon in landmark_rows(shared / "photos" / "landmarks")}
    out = tmp_path / "data"
    assert main(["data", "shards", str(landmark_copy), "--meta", str(landmark_copy / "landmarks.tsv"),
                 "--out", str(out), "--size", "64"]) == 0
    cap = capsys.readouterr()
    skipped = {r["path"]: r["reason"] for r in _rows(out / "skipped.csv")}
    assert set(skipped) == {"notes.txt", "broken.jpg", "trip/unlisted.jpg"}, skipped
    assert skipped["notes.txt"].startswith("not an image") and skipped["broken.jpg"].startswith("not a decodable")
    assert skipped["trip/unlisted.jpg"].startswith("no coordinates")
    assert "3 skipped" in cap.out and "skipped.csv" in cap.out and "5 rows of" in cap.err
    seen = {}
    for split in ("train", "val", "test"):
        rows = _rows(out / f"{split}.csv")
        assert rows and [r["IMG_ID"] for r in rows] == _shard_ids(out / split), split
        seen |= {r["IMG_ID"]: (float(r["LAT"]), float(r["LON"])) for r in rows}
    assert sum(len(_rows(out / f"{s}.csv")) for s in ("train", "val", "test")) == len(seen) == len(expected)
    assert set(seen) == set(expected)
    for name, (lat, lon) in expected.items():
        assert seen[name] == pytest.approx((lat, lon), abs=1e-9), name
    info = json.loads((out / "shards.json").read_text())
    assert info["n"] == len(expected) and info["skipped"] == 3 and not staging_path(out).exists()
    _, data = index_shards(out / "test", cache=False).read(0)
    with Image.open(io.BytesIO(data)) as im:
        assert min(im.size) <= 64 and not im.getexif()
    assert f"{len(expected)} photos (train" in cap.out

    bundle = tmp_path / "bundle"
    assert main(["train", "--out", str(bundle), "--set", f"data.root={out}", "--set", "data.image_size=32",
                 "--set", "data.workers=0", "--set", "data.scene_tasks=[]", "--set", "partition.tau_min=1",
                 "--set", "partition.tau_max=[8,4,2]", "--set", "model.neck_units=16", "--set", "train.epochs=1",
                 "--set", "train.batch_size=8", "--set", "train.samples_per_epoch=16"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(bundle), "--data", str(out), "--workers", "0", "--json",
                 "--out", str(tmp_path / "eval")]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["n"] == info["counts"]["test"] and scored["skipped"] == 0


def test_exif_gps_read_and_photos_turned_upright(tmp_path):
    """Catches EXIF GPS misread (south and west as positive, minutes and seconds dropped), a photo without a GPS
    position taken in, the EXIF orientation ignored, and a tiny input leaving val or test empty."""
    folder = tmp_path / "photos"
    _photo(folder / "paris.jpg", 1, gps=("N", (48.0, 51.0, 29.52), "E", (2.0, 17.0, 40.56)))
    _photo(folder / "santiago.jpg", 2, size=(40, 20), orientation=6,
           gps=("S", (33.0, 51.0, 24.12), "W", (70.0, 39.0, 0.0)))
    _photo(folder / "sub" / "tokyo.jpg", 3, gps=("N", (35.0, 40.0, 0.0), "E", (139.0, 45.0, 0.0)))
    _photo(folder / "nogps.jpg", 4)
    info = build_shards(folder, tmp_path / "out", exif=True, options=ShardOptions(size=16))
    assert info["counts"] == {"train": 1, "val": 1, "test": 1} and info["skipped"] == 1
    rows = {r["IMG_ID"]: r for s in ("train", "val", "test") for r in _rows(tmp_path / "out" / f"{s}.csv")}
    assert sorted(rows) == ["paris.jpg", "santiago.jpg", "sub/tokyo.jpg"]
    want = {"paris.jpg": (48.8582, 2.2946), "santiago.jpg": (-33.8567, -70.65), "sub/tokyo.jpg": (35.6667, 139.75)}
    for name, (lat, lon) in want.items():
        assert (float(rows[name]["LAT"]), float(rows[name]["LON"])) == pytest.approx((lat, lon), abs=1e-4), name
    assert _rows(tmp_path / "out" / "skipped.csv") == [{"path": "nogps.jpg", "reason": "no coordinates: no EXIF GPS "
                                                                                          "position"}]
    for split in ("train", "val", "test"):
        index = index_shards(tmp_path / "out" / split, cache=False)
        for k in range(len(index)):
            img_id, data = index.read(k)
            if img_id == "santiago.jpg":  # stored 40 x 20 with orientation 6: upright it is 20 x 40
                assert Image.open(io.BytesIO(data)).size == (16, 32)


def test_split_of_few_places_fills_train_first_and_says_what_is_empty(tmp_path, capsys):
    """Catches a small input whose cells all hash into val/test (train empty), and an empty split written as a
    CSV that no reader accepts instead of being named: one cell trains only, two cells train and validate."""
    one = split_photos(np.array([48.85, 48.86]), np.array([2.35, 2.36]), ShardOptions())[0]
    assert one.tolist() == [0, 0]
    for seed in range(20):  # whatever the seed, two cells give one training and one validation cell
        two = split_photos(np.array([48.85, -33.9]), np.array([2.35, 151.2]), ShardOptions(seed=seed))[0]
        assert sorted(two.tolist()) == [0, 1]
    folder = tmp_path / "photos"
    for k in range(3):
        _photo(folder / f"p{k}.jpg", k)
    (folder / "where.csv").write_text("name,lat,lon\np0.jpg,48.85,2.35\np1.jpg,48.86,2.36\np2,48.87,2.37\n")
    assert main(["data", "shards", str(folder), "--meta", str(folder / "where.csv"), "--out",
                 str(tmp_path / "out"), "--size", "16"]) == 0
    cap = capsys.readouterr()
    assert "3 photos (train 3, val 0, test 0)" in cap.out
    assert "split val is empty" in cap.err and "split test is empty" in cap.err and "--grid-deg" in cap.err
    assert not (tmp_path / "out" / "val.csv").exists() and not (tmp_path / "out" / "test").exists()


def test_buffer_leaves_out_close_training_photos_and_lists_them(tmp_path):
    """Catches a training photo 47 km from a held-out photo kept (a radius leak), or dropped without a trace."""
    lat, lon = np.array([48.85, 48.90, 10.0, -20.0, 30.0]), np.array([2.35, 2.99, 10.0, 40.0, -60.0])
    seed = next(s for s in range(100)  # a seed that puts the two close photos (two cells) on both sides
                if sorted((split_photos(lat, lon, ShardOptions(seed=s, buffer_km=0))[0][:2] > 0).tolist())
                == [False, True])
    split = split_photos(lat, lon, ShardOptions(seed=seed, buffer_km=0))[0]
    buffered = split_photos(lat, lon, ShardOptions(seed=seed, buffer_km=100))[0]
    train = int(np.flatnonzero(split[:2] == 0)[0])
    assert buffered[train] == -1 and (np.delete(buffered, train) == np.delete(split, train)).all()
    folder = tmp_path / "photos"
    for k in range(5):
        _photo(folder / f"p{k}.jpg", k)
    (folder / "where.csv").write_text("name,lat,lon\n" + "".join(f"p{k}.jpg,{lat[k]},{lon[k]}\n" for k in range(5)))
    info = build_shards(folder, tmp_path / "out", meta=folder / "where.csv",
                        options=ShardOptions(size=16, seed=seed, buffer_km=100))
    assert info["n"] == 4 and info["skipped_by_reason"] == {"left out by the split": 1}
    (row,) = _rows(tmp_path / "out" / "skipped.csv")
    assert row["path"] == f"p{train}.jpg" and "within 100 km of a val/test photo" in row["reason"]


def test_existing_output_is_kept_unless_forced(tmp_path, capsys):
    """Catches a second run writing over a finished dataset (or over a folder this command never wrote), and
    --force not replacing it."""
    folder = tmp_path / "photos"
    for k in range(3):
        _photo(folder / f"p{k}.jpg", k)
    (folder / "where.csv").write_text("name,lat,lon\np0.jpg,48.85,2.35\np1.jpg,-33.9,151.2\np2.jpg,35.7,139.7\n")
    out = tmp_path / "out"
    argv = ["data", "shards", str(folder), "--meta", str(folder / "where.csv"), "--out", str(out), "--size", "16"]
    assert main(argv) == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "already holds shards" in err and "--force" in err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    assert main([*argv, "--force", "--seed", "3"]) == 0
    assert json.loads((out / "shards.json").read_text())["options"]["seed"] == 3
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.txt").write_text("keep me\n")
    assert main([*argv[:-4], "--out", str(other), "--force"]) == 2
    assert "did not write" in capsys.readouterr().err and (other / "mine.txt").exists()


def test_interrupted_run_leaves_no_output_and_resumes(tmp_path, monkeypatch):
    """Catches a killed run leaving a half dataset at OUT, and a restart decoding every photo again instead of
    reusing the staging folder's resized photos."""
    folder = tmp_path / "photos"
    for k, (la, lo) in enumerate([(48.85, 2.35), (-33.9, 151.2), (35.7, 139.7), (40.7, -74.0)]):
        _photo(folder / f"p{k}.jpg", k, gps=("N" if la > 0 else "S", (abs(la), 0.0, 0.0), "E" if lo > 0 else "W",
                                            (abs(lo), 0.0, 0.0)))
    out = tmp_path / "out"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(own_photos, "write_shards", killed)
    with pytest.raises(KeyboardInterrupt):
        build_shards(folder, out, exif=True, options=ShardOptions(size=16))
    assert not out.exists() and len(list((staging_path(out) / "resized").glob("*.jpg"))) == 4
    monkeypatch.undo()
    info = build_shards(folder, out, exif=True, options=ShardOptions(size=16))
    assert info["resized_reused"] == 4 and info["n"] == 4 and not staging_path(out).exists()


@pytest.fixture
def work(tmp_path):
    """A folder with a photo, a locations file, an empty file, random bytes and a CSV without coordinates."""
    w = tmp_path / "work"
    _photo(w / "photos" / "a.jpg")
    (w / "where.csv").write_text("name,lat,lon\na.jpg,48.85,2.35\n")
    (w / "empty.csv").write_bytes(b"")
    (w / "random.bin").write_bytes(bytes(range(7, 256)) * 8)
    (w / "nocoords.csv").write_text("name,colour\na.jpg,red\n")
    (w / "afile").write_text("x\n")
    return w


CASES = [
    # (command line after `data shards`, words the one line must hold)
    (["nowhere", "--meta", "where.csv", "--out", "out"], ["photo folder nowhere does not exist"]),
    (["where.csv", "--meta", "where.csv", "--out", "out"], ["where.csv is a file, not a folder"]),
    (["photos", "--out", "out"], ["no coordinates given", "--meta FILE", "--exif"]),
    (["photos", "--meta", "where.csv", "--exif", "--out", "out"], ["either --meta FILE or --exif, not both"]),
    (["photos", "--meta", "missing.csv", "--out", "out"], ["locations file missing.csv does not exist"]),
    (["photos", "--meta", "empty.csv", "--out", "out"], ["locations file empty.csv is empty"]),
    (["photos", "--meta", "random.bin", "--out", "out"], ["random.bin is not a text file"]),
    (["photos", "--meta", "nocoords.csv", "--out", "out"], ["nocoords.csv: no latitude/longitude columns"]),
    (["photos", "--meta", "where.csv", "--out", "out", "--size", "8"], ["size must be at least 16"]),
    (["photos", "--meta", "where.csv", "--out", "afile"], ["--out afile is a file"]),
    (["photos", "--meta", "where.csv", "--out", "no/such/out"], ["folder no/such does not exist"]),
]


@pytest.mark.parametrize("argv, words", CASES, ids=[f"#{k}" for k in range(len(CASES))])
def test_bad_input_is_one_line_before_torch(work, argv, words):
    """Catches bad input found only after torch was imported, a traceback or usage text instead of one line
    naming the file and what to do, and anything written before the refusal."""
    before = {str(p.relative_to(work)) for p in work.rglob("*")}
    marker = work.parent / "heavy.json"
    code, out, err, heavy = run_cli(["data", "shards", *argv], work, marker, timeout=120)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("geomtl data: error: "), err
    for w in words:
        assert w in lines[0], lines[0]
    assert heavy == []
    assert {str(p.relative_to(work)) for p in work.rglob("*")} == before and out == ""


@pytest.mark.slow
def test_your_photos_notebook_runs_on_the_landmarks(shared, tmp_path):
    """Catches notebooks/your_photos.ipynb failing with papermill on a small real folder (its parameters, the calls
    into geomtl_core, the report table and map), or finishing without writing report.json."""
    from geomtl_core.compendium.runner import kernel_name

    import nbformat
    import papermill as pm

    folder = shared / "photos" / "landmarks"
    notebook = Path(__file__).resolve().parents[1] / "notebooks" / "your_photos.ipynb"
    executed = tmp_path / "your_photos.ipynb"
    pm.execute_notebook(str(notebook), str(executed), cwd=str(tmp_path), kernel_name=kernel_name(), progress_bar=False,
                        parameters={"photos": str(folder), "meta": str(folder / "landmarks.tsv"),
                                    "out": str(tmp_path / "run"), "epochs": 1, "size": 64, "image_size": 32})
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    n = len(landmark_rows(folder))
    assert sum(report["counts"].values()) == n and report["summary"]["n"] == report["counts"]["test"] > 0
    assert {f"acc_{t}km" for t in (1, 25, 200, 750, 2500)} | {"median_km"} <= set(report["summary"])
    outputs = [o for c in nbformat.read(executed, as_version=4).cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the map
    assert any("median error" in o.get("data", {}).get("text/html", "") for o in outputs)  # the table
