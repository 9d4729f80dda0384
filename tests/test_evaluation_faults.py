"""Evaluation never scores a neighbour's image: corrupt records among real photos in MP-16 format are
dropped, counted and listed, and every good photo gets exactly its clean-run prediction."""

import json
import sys
from pathlib import Path

from geomtl_core.cli import main
from geomtl_core.data.shards import write_shards

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from toydata import make_toy_dataset, train_tiny_bundle


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evalfaults")
    return train_tiny_bundle(make_toy_dataset(tmp / "toy", n_train=200, n_val=40), tmp / "bundle")


def _landmarks(shared: Path) -> list[tuple[str, bytes, float, float]]:
    folder = shared / "photos" / "landmarks"
    rows = []
    for line in (folder / "landmarks.tsv").read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        if len(cols) >= 5 and cols[3] and "MISSING" not in cols[4] and (folder / cols[3]).exists():
            rows.append((cols[3], (folder / cols[3]).read_bytes(), float(cols[1]), float(cols[2])))
    assert len(rows) >= 20
    return rows


def _write_split(root: Path, records: list[tuple[str, bytes, float, float]]) -> Path:
    write_shards([(i, b) for i, b, _, _ in records], root / "test", per_shard=7)
    pd.DataFrame({"IMG_ID": [r[0] for r in records], "AUTHOR": "x", "LAT": [r[2] for r in records],
                  "LON": [r[3] for r in records], "S3_Label": 0, "S16_Label": 0, "S365_Label": 0}
                 ).to_csv(root / "test.csv", index=False)
    return root


def _evaluate(bundle: Path, root: Path, out: Path, workers: int, capsys) -> tuple[dict, str]:
    assert main(["evaluate", str(bundle), "--data", str(root), "--json", "--workers", str(workers),
                 "--out", str(out)]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out.strip().splitlines()[-1]), captured.err


def test_corrupt_records_are_dropped_not_replaced(bundle_dir, shared, tmp_path, capsys):
    photos = _landmarks(shared)
    clean, _ = _evaluate(bundle_dir, _write_split(tmp_path / "clean", photos), tmp_path / "clean.csv", 0, capsys)
    assert clean["n"] == len(photos) and clean["skipped"] == 0
    # every method's predictions beside the best one's, for paired comparisons within the model
    per_method = sorted(p.name for p in tmp_path.glob("clean.*.csv"))
    assert per_method == sorted(["clean.hierarchy.csv", "clean.cells_5_200.csv", "clean.cells_5_100.csv",
                                 "clean.cells_5_60.csv", "clean.scenes.csv"])
    scenes = pd.read_csv(tmp_path / "clean.scenes.csv")  # each scored image's true and predicted scene class
    assert len(scenes) == len(photos) and {"img_id", "s3_true", "s3_pred"} <= set(scenes.columns)
    assert (tmp_path / "clean.hierarchy.csv").read_text() == (tmp_path / "clean.csv").read_text()
    assert (tmp_path / "clean.cells_5_60.csv").read_text() != (tmp_path / "clean.csv").read_text()

    first = photos[0][1]
    bad = [("bad_truncated.jpg", first[: len(first) // 3], 10.0, 10.0),
           ("bad_garbage.jpg", b"this is not a jpeg at all" * 10, -20.0, 30.0),
           ("bad_empty.jpg", b"", 50.0, -100.0)]
    mixed = list(photos)
    for k, rec in enumerate(bad):  # placed among the good photos, one right before a good one each
        mixed.insert(3 + 7 * k, rec)
    dirty, err = _evaluate(bundle_dir, _write_split(tmp_path / "dirty", mixed), tmp_path / "dirty.csv", 2, capsys)
    assert dirty["n"] == len(photos) and dirty["skipped"] == 3

    a = pd.read_csv(tmp_path / "clean.csv").set_index("img_id").sort_index()
    b = pd.read_csv(tmp_path / "dirty.csv").set_index("img_id").sort_index()
    assert list(b.index) == list(a.index)  # bad records are absent, every good one present once
    pd.testing.assert_frame_equal(a, b)  # ...with exactly its clean-run prediction
    listing = pd.read_csv(tmp_path / "dirty.skipped.tsv", sep="\t")
    assert sorted(listing["img_id"]) == sorted(r[0] for r in bad)
    assert listing["reason"].str.len().min() > 5
    assert not (tmp_path / "clean.skipped.tsv").exists()
    assert "skipped 3 unreadable" in err
    for key in ("acc_1km", "acc_25km", "acc_200km", "acc_750km", "acc_2500km", "median_km"):
        assert dirty[key] == pytest.approx(clean[key])
