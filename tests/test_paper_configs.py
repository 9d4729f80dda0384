"""The shipped MP-16 configs are GeoEstimation's published recipe, and the options they rely on work."""

from pathlib import Path

import geomtl_core
from geomtl_core.config import ExperimentConfig
from geomtl_core.errors import InputError
from geomtl_core.models.multitask import GeoMTLModel
from geomtl_core.models.precision import dtype_policy

import keras
import numpy as np
import pytest

CONFIGS = Path(geomtl_core.__file__).parent / "configs"


@pytest.mark.parametrize("name, scene", [("mp16_base_M.yml", []), ("mp16_mtl_S3.yml", ["s3"])])
def test_mp16_configs_are_the_published_recipe(name, scene):
    cfg = ExperimentConfig.load(CONFIGS / name)
    m, t, d = cfg.model, cfg.train, cfg.data
    assert (m.backbone, m.pretrained, m.freeze_backbone, m.neck_units, m.dropout) == ("resnet50", True, False, 0, 0.0)
    assert (t.optimizer, t.lr, t.momentum, t.weight_decay, t.epochs, t.batch_size) == ("sgd", 0.01, 0.9, 1e-4, 15, 128)
    assert (t.schedule, t.step_every, t.step_gamma, t.mixed_precision) == ("step", 4, 0.5, "auto")
    assert [Path(f).name for f in cfg.partition.cells_files] == [
        "cells_50_5000.csv", "cells_50_2000.csv", "cells_50_1000.csv"]
    assert cfg.partition.hierarchical and m.sync_bn
    assert (d.image_size, d.flip, d.jitter, d.scene_tasks) == (224, True, 0.0, scene)
    if scene:
        assert (m.loss_weighting, m.scene_weight) == ("fixed", 1.0)


def test_dtype_policy():
    assert dtype_policy("auto", cuda=True) == "mixed_bfloat16"
    assert dtype_policy("auto", cuda=False) == "float32"
    assert dtype_policy("float32", cuda=True) == "float32"
    with pytest.raises(InputError, match="mixed_precision"):
        dtype_policy("mixed_float16")


def test_no_neck_and_float32_logits_under_mixed_precision(tmp_path):
    """neck_units=0: pooled features feed the heads directly; logits stay float32 under mixed_bfloat16."""
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        m = GeoMTLModel({"a": 5}, {"s3": 3}, input_size=32, width=0.25, neck_units=0, dropout=0.0)
        x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype("uint8")
        out = m(x)
    finally:
        keras.config.set_dtype_policy("float32")
    assert all(keras.backend.standardize_dtype(v.dtype) == "float32" for v in out.values())
    assert m.heads["a"].kernel.shape[0] == 64  # SmallCNN's 256 * 0.25 channels, no Dense neck in between
    assert not any("neck" in w.path for w in m.weights)
    m.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert back.neck_units == 0
    with pytest.raises(InputError, match="neck_units"):
        GeoMTLModel({"a": 5}, input_size=32, neck_units=-1)
