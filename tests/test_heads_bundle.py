"""A compendium run on a frozen pretrained backbone keeps only its trained neck and heads (``heads.npz``); it
loads, evaluates and publishes as the image model it trained."""

from __future__ import annotations

from pathlib import Path

import geomtl_core  # noqa: F401 - selects the torch backend
from geomtl_core.compendium.publish import publish_bundle
from geomtl_core.config import ExperimentConfig
from geomtl_core.files import HEADS_FILE, MODEL_FILE, model_file
from geomtl_core.models.bundle import load_bundle
from geomtl_core.training.trainer import fit

import numpy as np
import pytest
from toydata import make_toy_dataset

FROZEN_PRETRAINED = {"backbone": "efficientnet_lite0", "pretrained": True, "freeze_backbone": True, "neck_units": 32}


def _fit(root: Path, data: Path, cache: Path, heads_only: bool):
    cfg = ExperimentConfig.from_dict({
        "data": {"root": str(data), "image_size": 32, "workers": 0, "scene_tasks": ["s3"], "cache_dir": str(cache)},
        "partition": {"tau_min": 5, "tau_max": [200, 100, 60]},
        "model": FROZEN_PRETRAINED,
        "train": {"epochs": 1, "batch_size": 32, "cache_features": True},
    })
    return fit(cfg, root, verbose=0, heads_only=heads_only)


@pytest.mark.slow
def test_a_frozen_run_keeps_its_heads_alone_and_loads_and_publishes_as_the_model_it_trained(tmp_path):
    """With ``heads_only`` the run folder holds ``heads.npz`` (no ``model.keras``, under a fifth of its size);
    :func:`load_bundle` assembles an image model whose every weight and whose answers on images equal the trained
    model in memory, and publishing writes that model whole as ``model.keras``. Catches an assembled model that is
    not the one evaluated (trained weights not copied in, another backbone or a layer drawn anew), a run that
    saves both files or the full model, and a publish that ships the heads alone."""
    data = make_toy_dataset(tmp_path / "data", n_train=160, n_val=40)
    run = tmp_path / "project" / "runs" / "smoke" / "toy"
    trained = _fit(run, data, tmp_path / "cache", heads_only=True)
    assert model_file(run) == run / HEADS_FILE and not (run / MODEL_FILE).exists()
    full = _fit(tmp_path / "full", data, tmp_path / "cache", heads_only=False)
    assert (run / HEADS_FILE).stat().st_size < (tmp_path / "full" / MODEL_FILE).stat().st_size / 5
    assert full.bundle is not None and trained.bundle is not None
    loaded = load_bundle(run)
    want = trained.bundle.model.get_weights()
    got = loaded.model.get_weights()
    assert len(got) == len(want) and all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    a, b = trained.bundle.model.predict(x, verbose=0), loaded.model.predict(x, verbose=0)
    assert all(np.array_equal(np.asarray(a[t]), np.asarray(b[t])) for t in a)
    dest = publish_bundle("smoke", "toy", dest=tmp_path / "published", root=tmp_path / "project", gallery=False)
    assert (dest / MODEL_FILE).is_file() and not (dest / HEADS_FILE).exists()
    published = load_bundle(dest).model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(published, want, strict=True))
