"""``geomtl evaluate``: its outputs go to a new folder, never among a bundle's training outputs, and it scores
benchmarks as distributed (a folder of photos + a metadata CSV in Im2GPS's, YFCC25600's or YFCC4k's layout)
exactly as it scores the same photos in shards."""

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from geomtl_core.cli import main
from geomtl_core.data.shards import write_shards

import pandas as pd
import pytest
from landmarks import landmark_rows

sys.path.insert(0, str(Path(__file__).parent))
from toydata import make_toy_dataset, train_tiny_bundle


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evalout")
    root = make_toy_dataset(tmp / "toy", n_train=200, n_val=40)
    (root / "test.csv").write_text((root / "val.csv").read_text())
    os.symlink(root / "val", root / "test")
    return root, train_tiny_bundle(root, tmp / "bundle")


def _digest(folder: Path) -> dict[str, str]:
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files if not p.relative_to(folder).parts[0].startswith("eval-")}


def test_evaluate_never_writes_into_the_bundle(toy, capsys):
    """Catches `evaluate --five-crop` rewriting the bundle's predictions_test.csv and some per-method files (a
    bundle left mixed): every file of the bundle stays byte-identical, the output goes to a new folder named
    for the options, a second run is refused unless --overwrite, and --overwrite replaces only an evaluate
    output."""
    root, bundle = toy
    before = _digest(bundle)
    args = ["evaluate", str(bundle), "--data", str(root), "--five-crop", "--workers", "0", "--json"]
    assert main(args) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    out = bundle / "eval-test-fivecrop"
    assert res["predictions"] == str(out / "predictions.csv") and res["n"] == 40
    assert _digest(bundle) == before
    names = sorted(p.name for p in out.iterdir())
    assert "predictions.csv" in names and "predictions.hierarchy.csv" in names and "evaluation.json" in names
    summary = json.loads((out / "evaluation.json").read_text())
    assert summary["options"]["five_crop"] and summary["n"] == 40

    assert main(args) == 2  # the earlier output is kept
    assert "eval-test-fivecrop exists" in capsys.readouterr().err
    (out / "predictions.csv").write_text("stale")
    assert main([*args, "--overwrite"]) == 0
    assert (out / "predictions.csv").read_text() != "stale" and _digest(bundle) == before
    capsys.readouterr()

    # single crop: a folder of its own
    assert main(["evaluate", str(bundle), "--data", str(root), "--workers", "0", "--json"]) == 0
    assert (bundle / "eval-test" / "predictions.csv").is_file()
    # never the bundle itself, its training outputs, or a folder that is not an evaluate output
    other = bundle.parent / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    for out_arg in (str(bundle), str(bundle / "predictions_val.csv"), str(bundle.parent)):
        assert main([*args, "--out", out_arg, "--overwrite"]) == 2
    assert main([*args, "--out", str(other), "--overwrite"]) == 2
    assert (other / "keep.txt").read_text() == "mine" and _digest(bundle) == before
    assert "not an output of geomtl evaluate" in capsys.readouterr().err


def test_unknown_split_name_is_named(toy, capsys):
    """Catches `--split tset` being reported as "metadata for split 'test' not found": the name is unknown."""
    root, bundle = toy
    assert main(["evaluate", str(bundle), "--data", str(root), "--split", "tset"]) == 2
    err = capsys.readouterr().err
    assert "unknown split name 'tset'" in err and "train, val, test" in err


def _landmarks(shared: Path) -> list[tuple[Path, float, float]]:
    rows = landmark_rows(shared / "photos" / "landmarks")
    assert len(rows) >= 20
    return rows


@pytest.fixture(scope="module")
def benchmark(shared, tmp_path_factory):
    """Real photos as a benchmark is distributed: a folder (one photo in a subfolder, a truncated JPEG, a file
    without a metadata row) and a metadata table (one row without its file)."""
    tmp = tmp_path_factory.mktemp("benchmark")
    img = tmp / "images"
    (img / "sub").mkdir(parents=True)
    rows = []
    for k, (f, lat, lon) in enumerate(_landmarks(shared)):
        rel = f"sub/{f.name}" if k == 0 else f.name
        shutil.copy(f, img / rel)
        rows.append((rel, lat, lon))
    data = (img / rows[1][0]).read_bytes()
    (img / "truncated.jpg").write_bytes(data[: len(data) // 3])
    rows.append(("truncated.jpg", 10.0, 20.0))
    rows.append(("not_downloaded.jpg", -10.0, -20.0))
    shutil.copy(img / rows[2][0], img / "extra.jpg")  # in the folder, not in the metadata
    return tmp, rows


def _layouts(tmp: Path, rows) -> dict[str, Path]:
    ids, lat, lon = [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
    n = len(rows)
    out = {"im2gps": tmp / "im2gps3k_places365.csv", "yfcc25600": tmp / "yfcc25600.csv", "yfcc4k": tmp / "yfcc4k.csv"}
    pd.DataFrame({"IMG_ID": ids, "AUTHOR": "a", "LAT": lat, "LON": lon, "S3_Label": 0, "S16_Label": 0,
                  "S365_Label": 0}).to_csv(out["im2gps"], index=False)
    pd.DataFrame({"name": ids, "AUTHOR": "a", "lat": lat, "lon": lon}).to_csv(out["yfcc25600"], index=False)
    pd.DataFrame({"RecordNumber": range(n), "name": ids, "Secret": "s", "lon": lon, "lat": lat, "Accuracy": 16,
                  "PhotoURL": "http://x"}).to_csv(out["yfcc4k"], index=False)  # lon before lat
    return out


def test_evaluate_images_with_metadata_in_every_layout(toy, benchmark, tmp_path, capsys):
    """Catches benchmarks that could not be evaluated as distributed: `evaluate --images DIR --meta CSV` scores
    every metadata row whose photo decodes, in each published layout (YFCC4k's lon-before-lat never swapped),
    drops and lists the truncated photo and the row without a file, and gives each photo exactly the prediction
    that evaluating the same photos from shards gives."""
    _, bundle = toy
    folder, rows = benchmark
    good = rows[:-2]
    preds = {}
    for layout, meta in _layouts(tmp_path, rows).items():
        out = tmp_path / f"out-{layout}"
        assert main(["evaluate", str(bundle), "--images", str(folder / "images"), "--meta", str(meta),
                     "--out", str(out), "--json", "--workers", "0"]) == 0
        cap = capsys.readouterr()
        res = json.loads(cap.out.strip().splitlines()[-1])
        assert (res["n"], res["skipped"]) == (len(good), 2), layout
        assert "1 files in" in cap.err and "have no row" in cap.err  # extra.jpg, reported, not scored
        skipped = pd.read_csv(out / "predictions.skipped.tsv", sep="\t")
        assert skipped["img_id"].tolist() == ["truncated.jpg", "not_downloaded.jpg"]
        assert "truncated" in skipped["reason"][0] and "no image file" in skipped["reason"][1]
        p = pd.read_csv(out / "predictions.csv", dtype={"img_id": str})
        assert p["img_id"].tolist() == [r[0] for r in good]
        assert p["true_lat"].round(4).tolist() == [round(r[1], 4) for r in good]
        assert p["true_lon"].round(4).tolist() == [round(r[2], 4) for r in good]
        preds[layout] = p
        report = json.loads((out / "evaluation.json").read_text())["data_report"]
        assert report == {"metadata_rows": len(rows), "images_in_folder": len(rows), "images_without_metadata": 1,
                          "metadata_without_image": 1}
    assert preds["im2gps"].equals(preds["yfcc4k"]) and preds["im2gps"].equals(preds["yfcc25600"])

    # the same photos (and the truncated one) as shards + test.csv: the same predictions, the same skip
    shards = tmp_path / "shards"
    recs = [(r[0], (folder / "images" / r[0]).read_bytes()) for r in rows[:-1]]
    write_shards(recs, shards / "test", per_shard=8)
    pd.DataFrame({"IMG_ID": [r[0] for r in rows[:-1]], "AUTHOR": "a", "LAT": [r[1] for r in rows[:-1]],
                  "LON": [r[2] for r in rows[:-1]], "S3_Label": 0, "S16_Label": 0, "S365_Label": 0}
                 ).to_csv(shards / "test.csv", index=False)
    assert main(["evaluate", str(bundle), "--data", str(shards), "--out", str(tmp_path / "from-shards"),
                 "--json", "--workers", "0"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (res["n"], res["skipped"]) == (len(good), 1)
    from_shards = pd.read_csv(tmp_path / "from-shards" / "predictions.csv", dtype={"img_id": str})
    assert from_shards.equals(preds["im2gps"])


def test_evaluate_images_option_errors(toy, benchmark, capsys):
    """--images without --meta, both --data and --images, and a missing folder: one line each, exit 2."""
    root, bundle = toy
    folder, _ = benchmark
    cases = [(["--images", str(folder / "images")], "--images and --meta go together"),
             (["--data", str(root), "--images", str(folder), "--meta", str(folder / "x.csv")], "not both"),
             (["--images", str(folder / "nope"), "--meta", str(folder / "x.csv")], "image folder not found"),
             ([], "nothing to evaluate on")]
    for extra, message in cases:
        assert main(["evaluate", str(bundle), *extra]) == 2
        assert message in capsys.readouterr().err
