"""``geomtl import geoestimation``: a checkpoint in exactly the format GeoEstimation's PyTorch code saves, made
from a random torchvision ResNet-50 and random heads over the real published cells, becomes a bundle whose
evaluation equals a plain-torch re-implementation of their inference on real photos."""

import argparse
import json
import sys
import time
import types

import geomtl_core  # noqa: F401 - selects the torch backend
from geomtl_core.cli import main
from geomtl_core.data.shards import write_shards
from geomtl_core.models.bundle import load_bundle
from geomtl_core.models.geoestimation import load_checkpoint

import numpy as np
import pandas as pd
import pytest
import s2sphere
import torch
import torchvision
import yaml
from landmarks import landmark_rows
from PIL import Image

SHORTNAMES = ["coarse", "middle", "fine"]
FILES = ["cells_50_5000.csv", "cells_50_2000.csv", "cells_50_1000.csv"]
N_PHOTOS = 4


class TheirModule(torch.nn.Module):
    """What their MultiPartitioningClassifier holds (utils_global.build_base_model('resnet50') + classifier)."""

    def __init__(self, n_classes: list[int]):
        super().__init__()
        base = torchvision.models.resnet50(weights=None)
        model = torch.nn.Sequential(*list(base.children())[:-2])
        model.avgpool = torch.nn.AdaptiveAvgPool2d(1)
        model.flatten = torch.nn.Flatten(start_dim=1)
        self.model = model
        self.classifier = torch.nn.ModuleList([torch.nn.Linear(2048, n) for n in n_classes])

    def forward(self, x):
        fv = self.model(x)
        return [head(fv) for head in self.classifier]


def _their_cells(cells_dir):
    """Their Partitioning: the CSV read with skiprows=2, indexed and sorted by class_label."""
    return [pd.read_csv(cells_dir / f, index_col="class_label", skiprows=2).sort_index() for f in FILES]


def _their_hierarchy(parts: list[pd.DataFrame]) -> np.ndarray:
    """s2_utils.Hierarchy.__build_hierarchy, as published: parents of each finest cell's mean coordinate."""
    label2index = [dict(zip(p["hex_id"], p.index, strict=True)) for p in parts]
    fine = parts[-1]
    rows = []
    for c in range(len(fine)):
        hexval = fine.iloc[c]["hex_id"]
        binval = bin(int(hexval, 16))[2:].rjust(len(hexval) * 4, "0").rstrip("0")
        level = int(len(binval[3:-1]) / 2)
        parents = []
        for lvl in reversed(range(2, level + 1)):
            ll = s2sphere.LatLng.from_degrees(fine.iloc[c]["latitude_mean"], fine.iloc[c]["longitude_mean"])
            tok = s2sphere.Cell.from_lat_lng(ll).id().parent(lvl).to_token()
            for p in reversed(range(len(parts))):
                if tok in label2index[p]:
                    parents.append(label2index[p][tok])
            if len(parents) == len(parts):
                break
        rows.append(parents[::-1])
    return np.array(rows, dtype=np.int64)


def _their_inference(net: TheirModule, files, parts, hier):
    """FiveCropImageDataset + _multi_crop_inference + inference(): per-partitioning max-over-crops softmax and
    the hierarchy's predicted coordinates."""
    norm = torchvision.transforms.Compose([
        torchvision.transforms.ToTensor(),
        torchvision.transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    batch = []
    for f in files:
        image = Image.open(f).convert("RGB")
        image = torchvision.transforms.Resize(256)(image)
        batch.append(torch.stack([norm(c) for c in torchvision.transforms.FiveCrop(224)(image)]))
    images = torch.stack(batch)
    n, ncrops = images.shape[:2]
    with torch.no_grad():
        yhats = net(images.reshape(n * ncrops, *images.shape[2:]))
    yhats = [torch.nn.functional.softmax(y, dim=1).reshape(n, ncrops, -1).max(dim=1)[0] for y in yhats]
    m = torch.from_numpy(hier)
    preds = torch.prod(torch.stack([y[:, m[:, i]] for i, y in enumerate(yhats)], dim=-1), dim=-1)
    cls = torch.argmax(preds, dim=1).numpy()
    lat = [float(parts[-1].iloc[c]["latitude_mean"]) for c in cls]
    lon = [float(parts[-1].iloc[c]["longitude_mean"]) for c in cls]
    return [y.numpy().astype(np.float64) for y in yhats], cls, np.array(lat), np.array(lon)


@pytest.fixture(scope="module")
def cells_dir(shared):
    return shared / "geoestimation" / "geo-cells"


@pytest.fixture(scope="module")
def released(tmp_path_factory, cells_dir):
    """A checkpoint as their Lightning training saves it, and the hparams.yaml beside it."""
    torch.manual_seed(0)
    n_classes = [len(p) for p in _their_cells(cells_dir)]
    net = TheirModule(n_classes).eval()
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):  # away from the (0, 1) defaults, so a skipped BN shows
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    tmp = tmp_path_factory.mktemp("geoestimation")
    params = {"arch": "resnet50", "weights": None, "batch_size": 128,
              "partitionings": {"ptype": "default", "shortnames": SHORTNAMES,
                                "files": [f"data/s2_cells/{f}" for f in FILES]}}
    ckpt = tmp / "epoch=014-val_loss=18.4833.ckpt"
    torch.save({"epoch": 14, "global_step": 553_000, "pytorch-lightning_version": "1.1.8",
                "state_dict": net.state_dict(), "hyper_parameters": params}, ckpt)
    (tmp / "hparams.yaml").write_text(yaml.safe_dump(params))
    return net, ckpt, tmp / "hparams.yaml"


@pytest.fixture(scope="module")
def photos(shared, tmp_path_factory):
    """A few real landmark photos and an Im2GPS-layout metadata CSV for them."""
    rows = landmark_rows(shared / "photos" / "landmarks")[:N_PHOTOS]
    tmp = tmp_path_factory.mktemp("photos")
    (tmp / "img").mkdir()
    for f, _, _ in rows:
        (tmp / "img" / f.name).write_bytes(f.read_bytes())
    pd.DataFrame({"IMG_ID": [f.name for f, _, _ in rows], "AUTHOR": "x", "LAT": [r[1] for r in rows],
                  "LON": [r[2] for r in rows]}).to_csv(tmp / "meta.csv", index=False)
    return tmp, [tmp / "img" / f.name for f, _, _ in rows]


@pytest.fixture(scope="module")
def imported(released, cells_dir, tmp_path_factory):
    _, ckpt, hparams = released
    out = tmp_path_factory.mktemp("bundle") / "base_M"
    t0 = time.perf_counter()
    assert main(["import", "geoestimation", str(ckpt), "--hparams", str(hparams), "--cells", str(cells_dir),
                 "--out", str(out)]) == 0
    print(f"import: {time.perf_counter() - t0:.1f} s")
    return out


@pytest.fixture(scope="module")
def bundle(imported):
    return load_bundle(imported)


@pytest.mark.slow
def test_hierarchy_equals_theirs(bundle, cells_dir):
    """The bundle's hierarchy (S2 containment of the cell ids) is the matrix their code builds from the
    cells' mean coordinates, for all 12,893 published fine cells."""
    np.testing.assert_array_equal(bundle.hierarchy.matrix, _their_hierarchy(_their_cells(cells_dir)))
    assert [p.name for p in bundle.parts] == SHORTNAMES and [len(p) for p in bundle.parts] == [3298, 7202, 12893]


@pytest.mark.slow
def test_imported_bundle_evaluates_as_their_inference(imported, bundle, released, photos, cells_dir, tmp_path,
                                                      capsys):
    """Catches any difference from their test-time pipeline (key mapping, BN, heads, resize, five crops,
    normalisation, max over crops, hierarchy, f* coordinates): geomtl's per-cell probabilities equal theirs to
    1e-4 (relative to each probability) and `evaluate --images` predicts their f* coordinates."""
    from geomtl_core.inference.evaluation import image_folder_split, predict_probabilities

    net, _, _ = released
    folder, files = photos
    parts = _their_cells(cells_dir)
    ref_probs, ref_cls, ref_lat, ref_lon = _their_inference(net, files, parts, _their_hierarchy(parts))

    recipe = bundle.labels["inference"]
    split, _ = image_folder_split(folder / "img", folder / "meta.csv", bundle.parts, 224, recipe=recipe,
                                  five_crop=True, batch_size=N_PHOTOS)
    probs, valid = predict_probabilities(bundle.model, split.loader, SHORTNAMES, progress=False, crop_reduce="max")
    assert valid.all()
    for name, ref in zip(SHORTNAMES, ref_probs, strict=True):
        got = probs[name]
        assert got.shape == ref.shape
        diff = np.abs(got - ref)
        big = ref > 1e-6
        print(f"{name}: max difference {diff.max():.2e}, relative {(diff[big] / ref[big]).max():.2e} where p > 1e-6; "
              f"largest probability {ref.max():.3f}", file=sys.__stderr__)
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-9)
        assert ref.max() > 0.01  # peaked enough that a wrong pipeline could not agree by accident

    out = tmp_path / "eval"
    assert main(["evaluate", str(imported), "--images", str(folder / "img"), "--meta", str(folder / "meta.csv"),
                 "--out", str(out), "--json", "--workers", "0"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["n"] == N_PHOTOS and res["skipped"] == 0
    pred = pd.read_csv(out / "predictions.csv")
    assert pred["img_id"].tolist() == [f.name for f in files]
    np.testing.assert_array_equal(pred["fine_class"].to_numpy(), ref_cls)
    np.testing.assert_allclose(pred["pred_lat"], ref_lat, atol=5e-7)
    np.testing.assert_allclose(pred["pred_lon"], ref_lon, atol=5e-7)
    summary = json.loads((out / "evaluation.json").read_text())
    assert summary["options"]["crop_reduce"] == "max" and summary["options"]["five_crop"]

    # the same photos as MP-16-style shards + test.csv: their recipe applies there too
    shards = tmp_path / "shards"
    write_shards([(f.name, f.read_bytes()) for f in files], shards / "test")
    (shards / "test.csv").write_text((folder / "meta.csv").read_text())
    assert main(["evaluate", str(imported), "--data", str(shards), "--out", str(tmp_path / "from-shards"),
                 "--json", "--workers", "0"]) == 0
    capsys.readouterr()
    assert pd.read_csv(tmp_path / "from-shards" / "predictions.csv").equals(pred)


@pytest.mark.slow
def test_predict_uses_their_recipe(imported, released, photos, cells_dir, tmp_path, capsys):
    """`geomtl predict` on an imported bundle takes their five crops and the maximum over crops: its top cells'
    probabilities and f* coordinates equal their inference's. Catches predict falling back to one centre crop."""
    net, _, _ = released
    _, files = photos
    parts = _their_cells(cells_dir)
    ref_probs, _, ref_lat, ref_lon = _their_inference(net, files, parts, _their_hierarchy(parts))
    assert main(["predict", str(imported), *map(str, files), "--json"]) == 0
    got = [r for r in json.loads(capsys.readouterr().out) if "lat" in r]
    assert len(got) == len(files)
    np.testing.assert_allclose([r["lat"] for r in got], ref_lat, atol=5e-7)
    np.testing.assert_allclose([r["lon"] for r in got], ref_lon, atol=5e-7)
    for name, ref in zip(SHORTNAMES, ref_probs, strict=True):
        np.testing.assert_allclose([r["cells"][name][0]["p"] for r in got], ref.max(axis=1), rtol=1e-4)


def test_checkpoint_with_pickled_hyperparameters_loads_safely(released, tmp_path, monkeypatch):
    """Catches a checkpoint whose hyper-parameters are pickled objects (Lightning's AttributeDict): it still
    loads with weights_only=True (inert stand-ins, no code run), and its partitionings are read from it."""
    from geomtl_core.models.geoestimation import read_hparams

    net, _, _ = released
    fake = types.ModuleType("fake_lightning_parsing")

    class AttributeDict(dict):
        pass

    AttributeDict.__module__ = fake.__name__
    AttributeDict.__qualname__ = "AttributeDict"
    fake.AttributeDict = AttributeDict
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    hp = AttributeDict(arch="resnet50", partitionings={"shortnames": ["a", "b", "c"], "files": FILES})
    path = tmp_path / "odd.ckpt"
    torch.save({"state_dict": {k: v for k, v in list(net.state_dict().items())[:3]}, "hyper_parameters": hp}, path)
    monkeypatch.delitem(sys.modules, fake.__name__)  # as for a user without the class installed
    ckpt = load_checkpoint(path)
    assert set(ckpt["state_dict"]) == set(list(net.state_dict())[:3])
    names, files, arch = read_hparams(None, ckpt)
    assert (names, files, arch) == (["a", "b", "c"], FILES, "resnet50")
    # hyper-parameters as an argparse.Namespace (their code passes one to the LightningModule)
    torch.save({"state_dict": {}, "hyper_parameters": argparse.Namespace(**hp)}, path)
    assert read_hparams(None, load_checkpoint(path))[:2] == (["a", "b", "c"], FILES)


def test_import_refuses_wrong_cells(released, tmp_path, cells_dir, capsys):
    """Catches heads and cells that do not belong together (one line, exit 2, no bundle written)."""
    _, ckpt, _ = released
    hp = tmp_path / "hparams.yaml"
    hp.write_text(yaml.safe_dump({"arch": "resnet50", "partitionings": {
        "shortnames": SHORTNAMES, "files": [FILES[0], FILES[2], FILES[1]]}}))
    assert main(["import", "geoestimation", str(ckpt), "--hparams", str(hp), "--cells", str(cells_dir),
                 "--out", str(tmp_path / "b")]) == 2
    assert "head of 'middle'" in capsys.readouterr().err and not (tmp_path / "b").exists()

