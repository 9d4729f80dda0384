"""The hybrid predictor (classifier narrows, retrieval refines) and plain kNN on a trained run with a frozen,
cached backbone: files beside the run's own predictions, the run's own gallery, choices made on validation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import geomtl_core  # noqa: F401 - selects the torch backend
from geomtl_core.compendium.run_eval import evaluate_run
from geomtl_core.config import ExperimentConfig
from geomtl_core.data.predictions import read_predictions
from geomtl_core.errors import InputError
from geomtl_core.inference.hybrid import DEFAULT_GRID, KM, KNN_GRID, hybrid_for_run

import numpy as np
import pandas as pd
import pytest
from toydata import make_toy_dataset, make_toy_with_test, train_tiny_bundle

FROZEN = {"freeze_backbone": True}



def _run(tmp: Path, root: Path, model: dict = FROZEN, **overrides) -> Path:
    """A tiny run (frozen backbone unless ``model`` says otherwise), evaluated on test as the compendium does
    (``predictions_test.*.csv``)."""
    out = train_tiny_bundle(root, tmp / "run", data_cache=tmp / "cache", model=model, **overrides)
    evaluate_run(out, ExperimentConfig.load(out / "config.yaml"), "test")
    return out


TIMINGS = ("seconds", "search_ms_per_image")


def _untimed(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in TIMINGS}


def _without_time(path: Path) -> dict:
    return _untimed(json.loads(path.read_text()))


def test_hybrid_files_sit_beside_the_runs_predictions_in_their_format_and_repeat_exactly(tmp_path):
    """Both prediction files have the evaluation's columns and exactly its test images in its order, hybrid.json
    holds settings from the grids, its f* accuracy is the run's own, the score column is f*'s, and a second
    call rewrites identical files. Catches another row order or subset (e.g. unreadable or sorted rows), a
    different writer or columns, settings outside the grid, query probabilities that are not the run's f*
    (another head, another hierarchy), and anything nondeterministic."""
    out = _run(tmp_path, make_toy_with_test(tmp_path))
    ref = pd.read_csv(out / "predictions_test.hierarchy.csv")
    first = hybrid_for_run(out)
    files = {m: out / f"predictions_test.{m}.csv" for m in ("hybrid", "knn")}
    for path in files.values():
        got = pd.read_csv(path)
        assert list(got.columns) == list(ref.columns)
        assert got.img_id.tolist() == ref.img_id.tolist()
        np.testing.assert_array_equal(got[["true_lat", "true_lon"]], ref[["true_lat", "true_lon"]])
        assert len(read_predictions(path).img_id) == len(ref)
    saved = json.loads((out / "hybrid.json").read_text())
    assert saved == first and first["test_images"] == len(ref) and first["fstar_method"] == "hierarchy"
    h, k = first["hybrid"], first["knn"]
    assert h["top_cells"] in DEFAULT_GRID["top_cells"] and h["k"] in DEFAULT_GRID["k"]
    assert h["kernel_km"] in DEFAULT_GRID["kernel_km"]
    assert {"k": k["k"], "kernel_km": k["kernel_km"]} in [dict(g) for g in KNN_GRID]
    for c, n in ((h, 27), (k, len(KNN_GRID))):  # every setting with each embedding; the best on validation wins
        assert set(c["val_accuracy_by_embedding"]) == {"backbone", "neck"}  # the toy model has a neck
        assert len(c["grid"]) == 2 * n
        assert c["val_accuracy"] == max(g["accuracy"] for g in c["grid"])
        best = max(c["val_accuracy_by_embedding"].values())
        assert c["embedding"] == next(e for e, a in c["val_accuracy_by_embedding"].items() if a == best)
        assert best == max(g["accuracy"] for g in c["grid"] if g["embedding"] == c["embedding"])
    assert first["test_accuracy"]["fstar"] == pytest.approx((ref.error_km <= 200).mean())
    f16 = first["float16_gallery"]  # the bundle's float16 gallery changes accuracy only through answers it moves
    assert 0.0 <= f16["answers_moved"] <= 1.0
    assert abs(f16["test_accuracy"] - first["test_accuracy"]["hybrid"]) <= f16["answers_moved"] + 1e-12
    for m in files:
        assert first["test_accuracy"][m] == pytest.approx((pd.read_csv(files[m]).error_km <= 200).mean())
    hyb = pd.read_csv(files["hybrid"])
    same = hyb.fine_class.to_numpy() == ref.fine_class.to_numpy()
    assert same.any()  # where hybrid and f* pick one cell, the score is f*'s score of it
    np.testing.assert_allclose(hyb.score[same], ref.score[same], rtol=0, atol=1e-6)
    before = {m: p.read_bytes() for m, p in files.items()}
    again = hybrid_for_run(out)
    assert {m: p.read_bytes() for m, p in files.items()} == before
    assert _untimed(again) == _without_time(out / "hybrid.json") == _untimed(first)
    for m in files:  # each predictor's summary is the evaluation's kind, of its own file
        assert first["methods"][m][f"acc_{int(KM)}km"] == pytest.approx(first["test_accuracy"][m])
    assert not list(out.glob(".*tmp*")), "temporary files left behind"
    ref.iloc[:-1].to_csv(out / "predictions_test.hierarchy.csv", index=False)  # the run's test rows changed
    with pytest.raises(InputError, match="other test images"):
        hybrid_for_run(out)


def test_missing_features_are_extracted_with_the_runs_model(tmp_path):
    """With the feature cache gone, the embeddings are extracted again by the bundle's model and every file comes
    out the same. Catches embeddings that are not the run's frozen backbone's pooled features (another model,
    transform or layer) and a hybrid that only works on a warm cache."""
    out = _run(tmp_path, make_toy_with_test(tmp_path))
    hybrid_for_run(out)
    files = ["predictions_test.hybrid.csv", "predictions_test.knn.csv"]
    before = [(out / f).read_bytes() for f in files] + [_without_time(out / "hybrid.json")]
    shutil.rmtree(tmp_path / "cache")
    hybrid_for_run(out)
    assert [(out / f).read_bytes() for f in files] + [_without_time(out / "hybrid.json")] == before
    # train, val, test: each its ids and their features
    assert len(list((tmp_path / "cache").glob("features_*.ids.npy"))) == 3
    assert len(list((tmp_path / "cache").glob("features_*.f32.npy"))) == 3


def test_neck_embeddings_are_what_the_heads_see(tmp_path):
    """The neck embedding of an image's pooled features, through ReLU and a head, gives the full model's logits
    (whose forward pass is separate code); a run limited to one embedding searches a gallery of its width, and an
    embedding the model lacks is an InputError. Catches a neck taken in training mode (batch statistics), without
    its normalisation, the backbone's features passed off as the neck's, and the ``embeddings`` choice ignored."""
    from geomtl_core.inference.embeddings import embed
    from geomtl_core.models.bundle import load_bundle

    import torch

    out = _run(tmp_path, make_toy_with_test(tmp_path))
    model = load_bundle(out).model
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8))
    with torch.no_grad():
        pooled = np.asarray(model.backbone_features(x).detach().cpu().numpy())
        want = {t: v.detach().cpu().numpy() for t, v in model(x, training=False).items()}
        neck = embed(model, np.vstack([pooled, np.full((1, pooled.shape[1]), np.nan)]), "neck")
        assert neck.shape == (7, 32) and np.isnan(neck[-1]).all()  # an unreadable row stays unreadable
        relu = torch.relu(torch.from_numpy(neck[:-1]))
        for t, v in want.items():
            np.testing.assert_allclose(model.heads[t](relu).detach().cpu().numpy(), v, rtol=1e-4, atol=1e-5)
    dims = {e: hybrid_for_run(out, embeddings=(e,))["embedding_dim"] for e in ("backbone", "neck")}
    assert dims == {"backbone": pooled.shape[1], "neck": 32}
    assert json.loads((out / "hybrid.json").read_text())["hybrid"]["embedding"] == "neck"
    with pytest.raises(InputError, match="offers"):
        hybrid_for_run(out, embeddings=("pixels",))


def test_a_flat_run_uses_its_finest_heads_probabilities(tmp_path):
    """Without a hierarchy the query probabilities are the finest head's and the reference rows are that head's
    file. Catches f* (or a missing ``hierarchy`` method) assumed for every run."""
    out = _run(tmp_path, make_toy_with_test(tmp_path), partition={"hierarchical": False})
    fine = json.loads((out / "labels.json").read_text())["partitionings"][-1]
    ref = pd.read_csv(out / f"predictions_test.{fine}.csv")
    assert not (out / "predictions_test.hierarchy.csv").exists()
    result = hybrid_for_run(out)
    assert result["fstar_method"] == fine
    assert result["test_accuracy"]["fstar"] == pytest.approx((ref.error_km <= 200).mean())
    hyb = pd.read_csv(out / "predictions_test.hybrid.csv")
    assert hyb.img_id.tolist() == ref.img_id.tolist()
    same = hyb.fine_class.to_numpy() == ref.fine_class.to_numpy()
    assert same.any()
    np.testing.assert_allclose(hyb.score[same], ref.score[same], rtol=0, atol=1e-6)


@pytest.mark.parametrize("data", [{"train_fraction": 0.3}, {"train_fraction": 0.3, "scene_on_all": True}],
                         ids=["share", "scene_on_all"])
def test_the_gallery_is_the_runs_geo_labelled_share(tmp_path, data):
    """With 30% of the training split (and with scene labels on every image, geo labels on the 30%), the gallery
    holds exactly the images the run learned locations from. Catches a gallery of the whole training split,
    of every image the scene task saw, or of the whole feature cache."""
    out = _run(tmp_path, make_toy_with_test(tmp_path), data=data, train={"samples_per_epoch": 64})
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["geo_labelled_images"] == 90
    assert metrics["train_images"] == (300 if data.get("scene_on_all") else 90)
    result = hybrid_for_run(out)
    assert result["gallery_images"] == metrics["geo_labelled_images"]


def test_backbone_knn_is_chosen_once_per_share_and_as_if_fresh(tmp_path):
    """Plain kNN on the backbone's features is chosen once per share in a process (it holds no trained weight), and
    a run whose share differs gets its own choice, equal to one computed from scratch. Catches a memo keyed without
    the gallery (one share's choice reused for another) and a memo that is never hit."""
    from geomtl_core.inference import hybrid as H

    data = make_toy_with_test(tmp_path)
    full = train_tiny_bundle(data, tmp_path / "full", data_cache=tmp_path / "cache", model=FROZEN)
    share = train_tiny_bundle(data, tmp_path / "share", data_cache=tmp_path / "cache", model=FROZEN,
                              data={"train_fraction": 0.3})
    for out in (full, share):
        evaluate_run(out, ExperimentConfig.load(out / "config.yaml"), "test")
    H._BACKBONE_KNN.clear()
    hybrid_for_run(full)
    memo = hybrid_for_run(share)["knn"]
    assert len(H._BACKBONE_KNN) == 2
    hybrid_for_run(share)
    assert len(H._BACKBONE_KNN) == 2, "the second call of a share must reuse its choice"
    H._BACKBONE_KNN.clear()
    fresh = hybrid_for_run(share)["knn"]
    assert memo == fresh


def test_the_settings_are_chosen_on_validation_only(tmp_path):
    """Moving every test image's true location changes the test accuracies but neither the chosen settings nor
    any grid point's validation accuracy. Catches choosing (or scoring the grid) on the test split."""
    data = make_toy_with_test(tmp_path)
    out = _run(tmp_path, data)
    first = hybrid_for_run(out)
    meta = pd.read_csv(data / "test.csv")
    meta[["LAT", "LON"]] = np.roll(meta[["LAT", "LON"]].to_numpy(), 7, axis=0)  # other cities' coordinates
    meta.to_csv(data / "test.csv", index=False)
    moved = hybrid_for_run(out)
    assert moved["test_accuracy"] != first["test_accuracy"], "the test change should show on test"
    for method in ("hybrid", "knn"):
        assert moved[method] == first[method]


@pytest.mark.parametrize("model,train", [
    ({"freeze_backbone": False}, {}),
    ({"freeze_backbone": True}, {"cache_features": False}),
    ({"backbone": "efficientnet_lite0", "finetune_blocks": 2}, {"cache_features": False}),
], ids=["unfrozen", "not_cached", "tuned_not_cached"])
def test_only_runs_on_cached_features_are_supported(tmp_path, model, train):
    """A run whose backbone learns whole (or whose features are not cached) is refused, naming the limitation,
    before anything is read. Catches a hybrid on embeddings the run never had (features of a backbone that has
    moved since they were computed)."""
    cfg = ExperimentConfig.from_dict({"data": {"root": str(tmp_path / "none")}, "model": model, "train": train})
    with pytest.raises(InputError, match="needs a run on cached features"):
        hybrid_for_run(tmp_path / "no_run", cfg=cfg)


@pytest.mark.slow
def test_a_tuned_run_embeds_through_its_tuned_blocks(tmp_path):
    """A run with tuned blocks caches the activations entering them; its ``backbone`` embedding is the tuned
    backbone's pooled output (the whole backbone on the images, separate code) and its ``neck`` one gives the
    full model's logits through ReLU and the heads; its hybrid runs and records an embedding of that width.
    Catches the cached activations used as embeddings (another width, features the tuned blocks never saw) and
    the tuned blocks run in training mode."""
    from geomtl_core.inference.embeddings import embed
    from geomtl_core.models.bundle import load_bundle

    import torch

    tuned = {"backbone": "efficientnet_lite0", "pretrained": False, "finetune_blocks": 1, "freeze_backbone": False}
    out = _run(tmp_path, make_toy_with_test(tmp_path), model=tuned)
    model = load_bundle(out).model
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8))
    with torch.no_grad():
        acts = np.asarray(model.backbone_features(x).detach().cpu().numpy())
        pooled = model.pool(model.backbone(model._normalised(x), training=False)).detach().cpu().numpy()
        want = {t: v.detach().cpu().numpy() for t, v in model(x, training=False).items()}
        emb = embed(model, acts, "backbone")
        assert acts.shape[1] != pooled.shape[1] and emb.shape == pooled.shape
        np.testing.assert_allclose(emb, pooled, rtol=1e-4, atol=1e-5)
        relu = torch.relu(torch.from_numpy(embed(model, acts, "neck")))
        for t, v in want.items():
            np.testing.assert_allclose(model.heads[t](relu).detach().cpu().numpy(), v, rtol=1e-4, atol=1e-4)
    saved = hybrid_for_run(out)
    width = {"backbone": pooled.shape[1], "neck": 32}[saved["hybrid"]["embedding"]]
    assert saved["embedding_dim"] == width and 0.0 <= saved["test_accuracy"]["hybrid"] <= 1.0


def test_an_unfrozen_trained_run_is_refused(tmp_path):
    """The same refusal from a real run's saved config (no ``cfg`` given). Catches reading the default config
    or ignoring the run's own."""
    data = make_toy_dataset(tmp_path / "toy", n_train=120, n_val=30)
    out = train_tiny_bundle(data, tmp_path / "run", data_cache=tmp_path / "cache")
    with pytest.raises(InputError, match="needs a run on cached features"):
        hybrid_for_run(out)
    assert not (out / "hybrid.json").exists()
