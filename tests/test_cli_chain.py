"""The commands chain (issue 24, items 4 and 8): ``predict --csv [--truth FILE]`` writes a file that ``score`` and
``compare`` read as they are; ``compare --common`` scores the shared ids; a missing bundle says so."""

import csv
import json
import shutil
import sys
from pathlib import Path

from geomtl_core.cli import main
from geomtl_core.data.predictions import read_predictions, write_predictions
from geomtl_core.data.truth import read_truth
from geomtl_core.errors import InputError
from geomtl_core.geo.geodesy import haversine_km

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from toydata import make_toy_dataset, train_tiny_bundle


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    """A tiny trained bundle (a few seconds)."""
    tmp = tmp_path_factory.mktemp("chain")
    return train_tiny_bundle(make_toy_dataset(tmp / "toy", n_train=200, n_val=40), tmp / "bundle")


@pytest.fixture(scope="module")
def landmark_folder(shared):
    return shared / "photos" / "landmarks"


def _landmark_truth(folder: Path) -> dict[str, tuple[float, float]]:
    """file name -> (lat, lon) of the photos the TSV lists and the folder holds, read independently."""
    out = {}
    for line in (folder / "landmarks.tsv").read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        if len(cols) >= 5 and cols[3] and "MISSING" not in cols[4] and (folder / cols[3]).exists():
            out[cols[3]] = (float(cols[1]), float(cols[2]))
    return out


def test_predict_truth_csv_chains_into_score_and_compare(bundle_dir, landmark_folder, tmp_path, capsys):
    """Catches: score refusing predict's CSV (today: columns path, lat, lon, ... not a known layout); --truth
    missing; landmarks.tsv in the folder counted as a failed image (exit 1); compare without --common."""
    out = tmp_path / "out.csv"
    tsv = landmark_folder / "landmarks.tsv"
    rc = main(["predict", str(bundle_dir), str(landmark_folder), "--csv", str(out), "--truth", str(tsv),
               "--no-progress"])
    report = capsys.readouterr().out
    assert rc == 0, report
    truth = _landmark_truth(landmark_folder)
    rows = list(csv.DictReader(out.open()))
    assert sorted(r["img_id"] for r in rows) == sorted(truth)  # the TSV is not a row: skipped, not failed
    assert "skipped 1 files that are not images" in report and report.count("landmarks.tsv") == 2  # + the source
    for r in rows:
        lat, lon = truth[r["img_id"]]
        assert (float(r["true_lat"]), float(r["true_lon"])) == pytest.approx((lat, lon), abs=1e-9)
        assert r["truth"] == "file"
        err = haversine_km(lat, lon, float(r["pred_lat"]), float(r["pred_lon"]))
        assert float(r["error_km"]) == pytest.approx(err, abs=1e-6)
    assert f"({len(rows)} from {tsv})" in report

    assert main(["score", str(out), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    errors = np.array([float(r["error_km"]) for r in rows])
    assert scored["n"] == len(rows) and scored["mean_km"] == pytest.approx(errors.mean(), rel=1e-9)

    # B: the same images but five, and two of its own (same truth where shared)
    preds = read_predictions(out)
    keep = np.arange(5, len(preds.img_id))
    ids = np.concatenate([preds.img_id[keep], ["extra_1.jpg", "extra_2.jpg"]])
    other = write_predictions(tmp_path / "other.csv", ids, np.r_[preds.true_lat[keep], 10, 20],
                              np.r_[preds.true_lon[keep], 10, 20], np.r_[preds.pred_lat[keep], 0, 0],
                              np.r_[preds.pred_lon[keep], 0, 0])
    assert main(["compare", str(out), str(other)]) == 2
    err = capsys.readouterr().err
    assert "5 ids only in" in err and "2 only in" in err and "--common" in err
    assert main(["compare", str(out), str(other), "--common", "--json", "--n-boot", "200"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["n"] == len(keep)
    assert f"{len(keep)} images in both files; dropped 5 only in {out}, 2 only in {other}" in captured.err


def test_refusal_without_common_has_no_empty_example(tmp_path, capsys):
    """Catches the refusal message ending '(e.g. [])' when one side has no ids of its own."""
    ids = np.array(["a", "b", "c", "d"])
    z = np.zeros(4)
    a = write_predictions(tmp_path / "a.csv", ids, z, z, z, z)
    b = write_predictions(tmp_path / "b.csv", ids[:3], z[:3], z[:3], z[:3], z[:3])
    assert main(["compare", str(a), str(b)]) == 2
    err = capsys.readouterr().err.strip()
    assert "(e.g. [])" not in err and "0 only in" in err and "1 ids only in" in err and "(e.g. ['d'])" in err
    assert main(["compare", str(a), str(b), "--common", "--n-boot", "50"]) == 0
    assert "3 images in both files; dropped 1 only in" in capsys.readouterr().err


def test_score_skips_rows_without_truth(bundle_dir, tmp_path, capsys):
    """Catches a predict CSV of photos without known truth being unreadable: rows lacking coordinates are
    skipped and counted; a file with none says how to give the truth."""
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(folder / f"p{k}.jpg")
    truth = tmp_path / "truth.csv"
    truth.write_text("name,lat,lon\np0.jpg,48.85,2.35\np1,40.7,-74.0\n")  # p1 by its stem; p2 unlisted
    out = tmp_path / "out.csv"
    assert main(["predict", str(bundle_dir), str(folder), "--csv", str(out), "--truth", str(truth),
                 "--no-progress"]) == 0
    assert "1 images not listed in" in capsys.readouterr().out
    assert main(["score", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["n"] == 2 and "1 rows without true or predicted coordinates" in captured.err
    bare = tmp_path / "bare.csv"
    assert main(["predict", str(bundle_dir), str(folder), "--csv", str(bare), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["score", str(bare)]) == 2
    assert "--truth" in capsys.readouterr().err


def test_truth_tables_in_the_usual_layouts(tmp_path):
    """Header CSVs with the usual names (GeoEstimation's IMG_ID,LAT,LON; lon before lat), headerless TSVs,
    ids with folders; bad coordinates name their line."""
    (tmp_path / "a.csv").write_text("IMG_ID,AUTHOR,LAT,LON\nx/1.jpg,me,10,20\n2.jpg,me,-5,30\n")
    t = read_truth(tmp_path / "a.csv")
    assert t.get("photos/x/1.jpg") == (10, 20) and t.get("y/1.jpg") is None and t.get("any/2.jpg") == (-5, 30)
    (tmp_path / "b.csv").write_text("name,lon,lat\n3.png,100,45\n")
    assert read_truth(tmp_path / "b.csv").get("3.png") == (45, 100)
    (tmp_path / "c.tsv").write_text("Some place\t1.5\t2.5\tfile one.jpg\t(3, 4)\tCC\n7\n")
    t = read_truth(tmp_path / "c.tsv")
    assert t.get("d/file one.jpg") == (1.5, 2.5) and t.get("Some place") == (1.5, 2.5) and t.n == 1
    (tmp_path / "d.csv").write_text("name,lat,lon\nok.jpg,1,1\nbad.jpg,95,1\n")
    with pytest.raises(InputError, match=r"d.csv:3"):
        read_truth(tmp_path / "d.csv")
    (tmp_path / "e.csv").write_text("lat,lon\n1,1\n")
    with pytest.raises(InputError, match="no id or file-name column"):
        read_truth(tmp_path / "e.csv")


def test_predict_with_a_missing_bundle_says_the_folder_does_not_exist(tmp_path, capsys):
    """Catches 'not a complete model bundle: labels.json is missing' for a folder that does not exist."""
    photo = tmp_path / "x.png"
    shutil.copyfile(Path(__file__), photo)
    assert main(["predict", str(tmp_path / "nobundle"), str(photo)]) == 2
    err = capsys.readouterr().err
    assert f"model bundle folder {tmp_path / 'nobundle'} does not exist" in err and "labels.json" not in err
