"""A bundle names its scene classes as its training data did, and says which dataset it was trained on."""

import json
import sys
from pathlib import Path

from geomtl_core.cli import main
from geomtl_core.data.scenes import OVERHEAD_PROXY_CAUTION, places365_names
from geomtl_core.inference.predict import predict
from geomtl_core.models.bundle import load_bundle

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from toydata import make_toy_dataset, train_tiny_bundle

PROXY_NAMES = {"S3_Label": ["water/ice/barren", "natural vegetation", "cultivated or built"],
               "S16_Label": [f"igbp class {k}" for k in range(17)]}


@pytest.fixture(scope="module")
def proxy_bundle(tmp_path_factory):
    """Trained on a folder that declares its label names in proxy.json, as the overhead proxy does."""
    tmp = tmp_path_factory.mktemp("proxy_names")
    root = make_toy_dataset(tmp / "data", n_train=200, n_val=40)
    (root / "proxy.json").write_text(json.dumps({"dataset": "geomtl proxy (toy)", "label_names": PROXY_NAMES}))
    return train_tiny_bundle(root, tmp / "bundle")


@pytest.fixture(scope="module")
def places_bundle(tmp_path_factory):
    """Trained on MP-16-style metadata (S3_Label, S16_Label) with no names of its own: Places365's apply."""
    tmp = tmp_path_factory.mktemp("places_names")
    root = make_toy_dataset(tmp / "data", n_train=200, n_val=40)
    return train_tiny_bundle(root, tmp / "bundle", scene_tasks=("s3", "s16"))


def _photos(tmp_path: Path) -> Path:
    import numpy as np
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(folder / f"p{k}.jpg")
    return folder


def test_proxy_bundle_uses_the_datasets_names_everywhere(proxy_bundle, tmp_path, capsys):
    b = load_bundle(proxy_bundle)
    assert b.class_names("s3") == PROXY_NAMES["S3_Label"]
    assert b.dataset == {"name": "geomtl proxy (toy)", "kind": "overhead_proxy"}
    assert b.caution == OVERHEAD_PROXY_CAUTION
    card = (proxy_bundle / "MODEL_CARD.md").read_text()  # every bundle says what it was trained on and is for
    assert "geomtl proxy (toy)" in card and "not a geolocator of ground-level photos" in card and "s3 (3" in card
    photos = _photos(tmp_path)
    results = predict(b, photos)
    assert all(r["scene"]["s3"]["label"] == PROXY_NAMES["S3_Label"][r["scene"]["s3"]["class"]] for r in results)
    assert main(["predict", str(proxy_bundle), str(photos), "--csv", str(tmp_path / "p.csv"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert err.count(OVERHEAD_PROXY_CAUTION) == 1
    rows = (tmp_path / "p.csv").read_text().splitlines()
    col = rows[0].split(",").index("s3")
    assert {r.split(",")[col] for r in rows[1:]} <= set(PROXY_NAMES["S3_Label"])
    assert "indoor" not in (tmp_path / "p.csv").read_text()
    assert main(["predict", str(proxy_bundle), str(photos), "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert any(name in table for name in PROXY_NAMES["S3_Label"])


def test_places365_style_bundle_uses_places365_names(places_bundle, tmp_path, capsys):
    b = load_bundle(places_bundle)
    names = places365_names()
    assert b.class_names("s3") == ["indoor", "natural", "urban"]
    assert b.class_names("s16") == names["s16"] and len(names["s16"]) == 16
    assert b.dataset["kind"] == "photos" and b.caution is None
    photos = _photos(tmp_path)
    assert main(["predict", str(places_bundle), str(photos), "--json", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert OVERHEAD_PROXY_CAUTION not in captured.err
    for r in json.loads(captured.out):
        assert r["scene"]["s3"]["label"] == ["indoor", "natural", "urban"][r["scene"]["s3"]["class"]]
        assert r["scene"]["s16"]["label"] == names["s16"][r["scene"]["s16"]["class"]]


def test_bundle_without_recorded_names_shows_indices(places_bundle, tmp_path):
    """Bundles saved before names were recorded still load: their classes are shown as indices."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(places_bundle, old)
    labels = json.loads((old / "labels.json").read_text())
    del labels["class_names"], labels["dataset"]
    (old / "labels.json").write_text(json.dumps(labels))
    b = load_bundle(old)
    assert b.class_names("s3") == ["0", "1", "2"] and b.caution is None
