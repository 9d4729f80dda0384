"""A bundle that carries a retrieval gallery predicts with the hybrid (``geomtl predict`` / ``geomtl evaluate``),
``--no-retrieval`` turns it off, and ``publish_bundle`` writes the gallery into the bundle it publishes."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import geomtl_core  # noqa: F401 - selects the torch backend
from geomtl_core.cli import main as cli
from geomtl_core.compendium import publish
from geomtl_core.data.images import TransformConfig, decode_image, eval_transform, to_tensor
from geomtl_core.errors import InputError
from geomtl_core.geo.geolocate import geolocate, softmax
from geomtl_core.geo.retrieval import HYBRID_KEYS, Gallery, hybrid_locate
from geomtl_core.inference import hybrid as inference_hybrid
from geomtl_core.inference.hybrid import hybrid_for_run
from geomtl_core.inference.predict import GALLERY_FILE, HYBRID_FILE, Predictor, expand_inputs
from geomtl_core.models.bundle import load_bundle

import numpy as np
import pandas as pd
import pytest
import simplejpeg
import torch

sys.path.insert(0, str(Path(__file__).parent))
from toydata import CENTRES, make_toy_with_test, train_tiny_bundle

SCALE, RUN, NECK_RUN, TUNED_RUN = "smoke", "mtl_frozen", "mtl_frozen_neck", "mtl_tuned"
SETTINGS = {"top_cells": 1, "k": 1, "kernel_km": None}
"""Settings unlike hybrid_locate's defaults, written into a bundle's hybrid.json to see they are the ones used."""



@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project folder holding one frozen-feature run at ``runs/smoke/mtl_frozen`` through hybrid_for_run with
    the backbone's features, its copy ``mtl_frozen_neck`` through it with the neck's, and a run with a tuned
    block (``mtl_tuned``) through it with its tuned backbone's pooled features."""
    tmp = tmp_path_factory.mktemp("hybrid_predict")
    root = tmp / "project"
    (root / "notebooks").mkdir(parents=True)
    (root / "_config.yml").write_text("title: test\n")
    run = root / "runs" / SCALE / RUN
    train_tiny_bundle(make_toy_with_test(tmp), run, data_cache=tmp / "cache", model={"freeze_backbone": True})
    shutil.copytree(run, run.with_name(NECK_RUN))
    hybrid_for_run(run, embeddings=("backbone",))
    hybrid_for_run(run.with_name(NECK_RUN), embeddings=("neck",))
    tuned = root / "runs" / SCALE / TUNED_RUN
    train_tiny_bundle(make_toy_with_test(tmp / "tuned"), tuned, data_cache=tmp / "cache_tuned",
                      model={"backbone": "efficientnet_lite0", "pretrained": False, "finetune_blocks": 1})
    hybrid_for_run(tuned, embeddings=("backbone",))
    return root


@pytest.fixture(scope="module")
def bundles(project, tmp_path_factory) -> dict[str, Path]:
    """The run published with its gallery (``with``; ``neck``: its neck-embedding copy; hybrid.json's settings
    replaced by :data:`SETTINGS` in all three, as in ``tuned``: the tuned run's) and without (``without``)."""
    tmp = tmp_path_factory.mktemp("bundles")
    out = {"with": publish.publish_bundle(SCALE, RUN, dest=tmp / "with", root=project),
           "neck": publish.publish_bundle(SCALE, NECK_RUN, dest=tmp / "neck", root=project),
           "tuned": publish.publish_bundle(SCALE, TUNED_RUN, dest=tmp / "tuned", root=project),
           "without": publish.publish_bundle(SCALE, RUN, dest=tmp / "without", root=project, gallery=False)}
    for name in ("with", "neck", "tuned"):
        saved = json.loads((out[name] / HYBRID_FILE).read_text())
        saved["hybrid"] |= SETTINGS
        (out[name] / HYBRID_FILE).write_text(json.dumps(saved))
    return out


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """JPEGs coloured like the toy cities (the training palette), one folder, sorted."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    palette = rng.integers(30, 225, (len(CENTRES), 3))
    for i in range(12):
        c = i % len(CENTRES)
        img = np.clip(palette[c] + rng.normal(0, 20, (48, 48, 3)), 0, 255).astype(np.uint8)
        img[:, (c * 7) % 48 : (c * 7) % 48 + 6] = 255
        (folder / f"{i:02d}.jpg").write_bytes(simplejpeg.encode_jpeg(img, quality=90))
    return expand_inputs(folder)


def _batch(bundle, files: list[Path]) -> torch.Tensor:
    """The model-ready (N, H, W, 3) uint8 batch, built here from the bundle's image size and the eval transform."""
    size = int(bundle.labels["image_size"])
    cfg = TransformConfig(size=size)
    tf = eval_transform(cfg)
    imgs = [tf(to_tensor(decode_image(f.read_bytes(), min_side=round(size * cfg.resize_ratio)))).permute(1, 2, 0)
            for f in files]
    return torch.stack(imgs).contiguous()


def _classifier(bundle, x: torch.Tensor) -> tuple[dict[str, np.ndarray], object]:
    """Softmax probabilities of the full model on ``x`` and f*'s answer (the bundle is hierarchical)."""
    with torch.no_grad():
        out = bundle.model(x, training=False)
    probs = {t: softmax(np.asarray(v.detach().cpu().numpy(), np.float64)) for t, v in out.items()}
    return probs, geolocate(probs, bundle.parts, bundle.hierarchy)["hierarchy"]


def _predict(folder: Path, files: list[Path], **kw) -> list[dict]:
    return list(Predictor(load_bundle(folder), batch_size=5, **kw).run(files))


@pytest.mark.slow
@pytest.mark.parametrize("which", ["with", "neck", "tuned"])
def test_a_bundle_with_a_gallery_predicts_with_the_hybrid_of_its_settings(bundles, photos, which):
    """Every photo's answer is method "hybrid" at :func:`hybrid_locate`'s point, worked out here from the model's
    pooled backbone features (the whole tuned backbone's for a tuned run; or the neck's embedding of them, as
    hybrid.json says), f* fine-cell scores of the
    full model's probabilities and the bundle's gallery with hybrid.json's settings; the classifier's own answer
    is kept. Catches the hybrid not used, other embeddings (the neck's for the backbone's and back, unpooled),
    other query scores (the finest head's, unnormalised), settings not read from hybrid.json (the defaults),
    batches mixed up, and the classifier's answer lost."""
    folder = bundles[which]
    bundle = load_bundle(folder)
    assert json.loads((folder / HYBRID_FILE).read_text())["hybrid"]["embedding"] == \
        {"with": "backbone", "neck": "neck", "tuned": "backbone"}[which]
    x = _batch(bundle, photos)
    probs, fstar = _classifier(bundle, x)
    with torch.no_grad():
        m = bundle.model
        emb = m.pool(m.backbone(m._normalised(x), training=False)) if which == "tuned" else m.backbone_features(x)
        emb = np.asarray((m.neck_embedding(emb) if which == "neck" else emb).detach().cpu().numpy())
    scores = bundle.hierarchy.scores([probs[p.name] for p in bundle.parts])
    gallery = Gallery.from_npz(folder / GALLERY_FILE)
    lat, lon = hybrid_locate(gallery, emb, scores, **SETTINGS)
    default_lat, default_lon = hybrid_locate(gallery, emb, scores)
    assert not (np.array_equal(lat, default_lat) and np.array_equal(lon, default_lon)), \
        "precondition: the bundle's settings and the defaults should disagree somewhere"
    results = _predict(folder, photos)
    assert [r["method"] for r in results] == ["hybrid"] * len(photos)
    np.testing.assert_allclose([r["lat"] for r in results], lat, rtol=0, atol=1e-9)
    np.testing.assert_allclose([r["lon"] for r in results], lon, rtol=0, atol=1e-9)
    for j, r in enumerate(results):
        assert r["classifier"]["method"] == "hierarchy"
        assert r["classifier"]["lat"] == pytest.approx(fstar.lat[j], abs=1e-9)
        assert r["classifier"]["lon"] == pytest.approx(fstar.lon[j], abs=1e-9)
        cls = int(bundle.parts[-1].assign([r["lat"]], [r["lon"]])[0])
        assert r["score"] == pytest.approx(scores[j, cls] if cls >= 0 else 0.0, rel=1e-5, abs=1e-12)


def test_no_retrieval_gives_exactly_the_classifier_alone(bundles, photos, capsys):
    """``retrieval=False`` and ``geomtl predict --no-retrieval`` on the gallery bundle give the very results of
    the same model published without a gallery (no ``classifier`` key, f*'s method and coordinates). Catches
    the switch ignored (in the Predictor or the CLI) and a classifier path changed by the hybrid's code."""
    plain = _predict(bundles["without"], photos)
    off = _predict(bundles["with"], photos, retrieval=False)
    assert off == plain
    rc = cli(["predict", str(bundles["with"]), str(photos[0].parent), "--json", "--no-progress", "--no-retrieval",
              "--batch-size", "5"])  # the batches of _predict: the same float noise
    got = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert [{k: v for k, v in r.items() if k != "img_id"} for r in got] == json.loads(json.dumps(plain))
    rc = cli(["predict", str(bundles["with"]), str(photos[0].parent), "--json", "--no-progress"])
    assert rc == 0 and {r["method"] for r in json.loads(capsys.readouterr().out)} == {"hybrid"}


def test_a_bundle_without_a_gallery_predicts_as_before(bundles, photos):
    """Without gallery.npz (hybrid.json still there) the answer is f* of the full model's probabilities, worked
    out here, with no ``classifier`` key. Catches retrieval switched on by hybrid.json alone, or the
    classifier's coordinates, method or score changed for every bundle."""
    bundle = load_bundle(bundles["without"])
    assert (bundles["without"] / HYBRID_FILE).is_file() and not (bundles["without"] / GALLERY_FILE).exists()
    _, fstar = _classifier(bundle, _batch(bundle, photos))
    results = _predict(bundles["without"], photos)
    assert all("classifier" not in r and r["method"] == "hierarchy" for r in results)
    np.testing.assert_allclose([r["lat"] for r in results], fstar.lat, rtol=0, atol=1e-9)
    np.testing.assert_allclose([r["lon"] for r in results], fstar.lon, rtol=0, atol=1e-9)
    np.testing.assert_allclose([r["score"] for r in results], fstar.score, rtol=1e-5)


def _corrupt_bytes(path: Path) -> None:
    path.write_bytes(b"PK\x03\x04 not really a zip archive")


def _missing_cells(path: Path) -> None:
    with np.load(path) as z:
        kept = {k: z[k] for k in z.files if k != "cell"}
    path.unlink()
    np.savez(path, **kept)


def _no_settings(path: Path) -> None:
    (path.parent / HYBRID_FILE).unlink()


@pytest.mark.parametrize("damage,message", [(_corrupt_bytes, "not a readable gallery file"),
                                            (_missing_cells, r"missing arrays \['cell'\]"),
                                            (_no_settings, "hybrid.json is missing")],
                         ids=["corrupt", "missing_array", "no_settings"])
def test_a_damaged_gallery_is_a_clear_input_error(bundles, photos, tmp_path, capsys, damage, message):
    """A gallery.npz that is not a zip, lacks an array, or has no hybrid.json beside it is an InputError naming
    the file (``geomtl predict``: exit 2 with that line), and ``--no-retrieval`` still predicts. Catches a raw
    zipfile/KeyError traceback, a silent fall-back to the classifier, and a gallery read when it is turned off."""
    folder = tmp_path / "bundle"
    shutil.copytree(bundles["with"], folder)
    damage(folder / GALLERY_FILE)
    with pytest.raises(InputError, match=message) as err:
        Predictor(load_bundle(folder))
    assert str(folder / GALLERY_FILE) in str(err.value)
    assert cli(["predict", str(folder), str(photos[0]), "--json", "--no-progress"]) == 2
    assert str(folder / GALLERY_FILE) in capsys.readouterr().err
    assert [r["error"] for r in _predict(folder, photos[:2], retrieval=False)] == [None, None]


def test_publish_writes_the_gallery_unless_told_not_to(project, bundles, monkeypatch):
    """publish_bundle of a run with hybrid.json writes gallery.npz into the bundle: the run's geo-labelled
    training images over the bundle's fine cells; ``--no-gallery`` (main) publishes without it, also when the run
    folder holds one. Catches the gallery left out, written outside the bundle, or copied against the flag."""
    saved = json.loads((project / "runs" / SCALE / RUN / HYBRID_FILE).read_text())
    gallery = Gallery.from_npz(bundles["with"] / GALLERY_FILE)
    assert len(gallery) == saved["gallery_images"] > 0
    assert gallery.n_cells == len(load_bundle(bundles["with"]).parts[-1])
    assert GALLERY_FILE == inference_hybrid.GALLERY_FILE
    assert not list(bundles["with"].parent.glob(".*partial*")), "staging folder left behind"
    run = project / "runs" / SCALE / RUN
    inference_hybrid.save_gallery(run)  # a gallery in the run folder must not slip through either
    monkeypatch.chdir(project)
    assert publish.main(["--scale", SCALE, "--run", RUN, "--no-gallery"]) == 0
    dest = project / "models" / SCALE
    assert (dest / "model.keras").is_file() and (dest / HYBRID_FILE).is_file()
    assert not (dest / GALLERY_FILE).exists()
    assert publish.main(["--scale", SCALE, "--run", RUN]) == 0
    assert len(Gallery.from_npz(dest / GALLERY_FILE)) == len(gallery)
    (run / GALLERY_FILE).unlink()


def test_evaluate_scores_the_hybrid_as_best_and_no_retrieval_turns_it_off(project, bundles, tmp_path, capsys):
    """``geomtl evaluate`` on a gallery bundle with its run's own hybrid.json adds method ``hybrid`` (the best:
    predictions.csv is its file) whose rows, points, cells and scores are those hybrid_for_run wrote for the run's
    test split from its cached features, and leaves the classifier's methods as ``--no-retrieval`` scores them.
    Catches evaluate ignoring the gallery, the settings or the flag, other embeddings or query scores, and rows
    misaligned between the classifier's pass and the hybrid's."""
    run = project / "runs" / SCALE / RUN
    folder = tmp_path / "bundle"
    shutil.copytree(bundles["with"], folder)
    shutil.copy(run / HYBRID_FILE, folder / HYBRID_FILE)  # the settings chosen on validation
    data = Path(load_bundle(folder).config.data.root)
    base = ["evaluate", str(folder), "--data", str(data), "--split", "test", "--json", "--workers", "0"]
    assert cli([*base, "--out", str(tmp_path / "on")]) == 0
    assert cli([*base, "--out", str(tmp_path / "off"), "--no-retrieval"]) == 0
    capsys.readouterr()
    on = json.loads((tmp_path / "on" / "evaluation.json").read_text())
    off = json.loads((tmp_path / "off" / "evaluation.json").read_text())
    assert on["best"] == "hybrid" and off["best"] == "hierarchy" and "hybrid" not in off["methods"]
    assert {k: v for k, v in on["methods"].items() if k != "hybrid"} == off["methods"]
    assert on["options"]["retrieval"] and not off["options"]["retrieval"]
    saved = json.loads((run / HYBRID_FILE).read_text())
    assert {k: on["hybrid"][k] for k in HYBRID_KEYS} == {k: saved["hybrid"][k] for k in HYBRID_KEYS}
    best = pd.read_csv(tmp_path / "on" / "predictions.csv")
    hyb = pd.read_csv(tmp_path / "on" / "predictions.hybrid.csv")
    pd.testing.assert_frame_equal(best, hyb)
    pd.testing.assert_frame_equal(hyb, pd.read_csv(run / "predictions_test.hybrid.csv"))
    assert on["methods"]["hybrid"]["acc_200km"] == pytest.approx((hyb.error_km <= 200).mean())
    assert hyb.img_id.tolist() == pd.read_csv(tmp_path / "off" / "predictions.hierarchy.csv").img_id.tolist()
