"""Where the speed layers and the lean train step run (issue #22): only on a CPU, under the float32 policy,
with the tested Keras minor version; everywhere else the stock Keras layers, ``Layer.__call__`` and Keras'
own ``train_step``. Each test names the breakage it catches."""

from __future__ import annotations

import warnings

import geomtl_core  # noqa: F401  (selects the torch backend)
from geomtl_core.models import fast_layers as fl
from geomtl_core.models import fast_path, multitask
from geomtl_core.models.multitask import GeoMTLModel, compile_model

import keras
import numpy as np
import pytest
import torch

TESTED = keras.__version__
HEADS, SCENE = {"coarse": 5, "fine": 9}, {"s3": 3}


def _data(n=8, size=32):
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 255, (n, size, size, 3)).astype(np.uint8))
    return x, {t: torch.from_numpy(rng.integers(0, c, n)) for t, c in {**HEADS, **SCENE}.items()}


def _model(backbone="small_cnn"):
    keras.utils.set_random_seed(0)
    return GeoMTLModel(HEADS, SCENE, backbone=backbone, input_size=32, width=0.25, dropout=0.5,
                       label_smoothing=0.1, pretrained=False)


def _ours(model) -> list[str]:
    """Names of the model's layers whose class is one of ``fast_layers``' (the speed layers)."""
    return [layer.name for layer in model._flatten_layers(include_self=False) if type(layer).__module__ == fl.__name__]


def _count_steps(monkeypatch):
    """Count Keras' own train_step and the lean step; the counts dict fills as the model trains."""
    counts = {"keras": 0, "lean": 0}
    keras_step, lean_step = keras.Model.train_step, multitask.lean_train_step

    def keras_spy(self, data):
        counts["keras"] += 1
        return keras_step(self, data)

    def lean_spy(*args, **kwargs):
        counts["lean"] += 1
        return lean_step(*args, **kwargs)

    monkeypatch.setattr(keras.Model, "train_step", keras_spy)
    monkeypatch.setattr(multitask, "lean_train_step", lean_spy)
    return counts


def _train(model, steps=3):
    x, y = _data()
    compile_model(model, keras.optimizers.AdamW(1e-3, weight_decay=0.05))
    logs = [model.train_on_batch(x, y, return_dict=True) for _ in range(steps)]
    assert all(np.isfinite(log["loss"]) for log in logs)
    return logs


@pytest.mark.parametrize(("device", "policy", "version", "enabled"), [
    ("cpu", "float32", TESTED, True),
    ("cpu", "float32", f"{fast_path.TESTED_KERAS}.0", True),
    ("cuda", "float32", TESTED, False),
    ("cuda:0", "float32", TESTED, False),
    ("mps", "float32", TESTED, False),
    ("cpu", "mixed_float16", TESTED, False),
    ("cpu", "mixed_bfloat16", TESTED, False),
    ("cpu", "bfloat16", TESTED, False),
    ("cuda", "mixed_bfloat16", TESTED, False),
    ("cpu", "float32", "3.16.0", False),
    ("cpu", "float32", "3.14.2", False),
    ("cpu", "float32", "4.0.0", False),
])
def test_the_decision_table(device, policy, version, enabled):
    """Catches a decision that forgets a condition (device, dtype policy, Keras minor version): each row flips
    when its check is removed from ``fast_path_enabled``."""
    decision = fast_path.fast_path_enabled(device, policy, version)
    assert bool(decision) is enabled and decision.enabled is enabled
    assert decision.reason  # says why, on or off


def test_another_backend_or_missing_internals_is_off():
    """Catches a fast path taken where Keras' private modules could not be imported or on another backend."""
    assert not fast_path.fast_path_enabled("cpu", "float32", TESTED, backend="jax")
    assert not fast_path.fast_path_enabled("cpu", "float32", TESTED, internals=False)


def test_a_failed_keras_src_import_turns_the_fast_path_off(monkeypatch):
    """Catches an unguarded ``keras.src`` import: where it fails, the lookup returns None (fast path off)
    instead of raising."""
    import sys

    monkeypatch.setattr(fast_path, "_INTERNALS", False)  # not looked up yet
    monkeypatch.setattr(fast_path, "_warned", set())
    monkeypatch.setitem(sys.modules, "keras.src.backend.common.symbolic_scope", None)  # import -> ImportError
    assert fast_path.keras_internals() is None
    with pytest.warns(UserWarning, match="internals"):
        assert not fast_path.fast_path_now("float32")
    assert fast_path.current_device() in ("cpu", "cuda", "mps")


def test_cpu_float32_tested_keras_takes_the_fast_path(monkeypatch):
    """Catches the fast path switched off where it was measured (CPU, float32, tested Keras): the book's speed
    (and its bit-identical numerics) come from the speed layers and the lean step."""
    counts = _count_steps(monkeypatch)
    m = _model()
    assert m.fast_path and "cpu" in m.fast_path.reason
    assert type(m.backbone.blocks[0]) is fl.Conv2D and type(m.neck) is fl.Dense
    _train(m)
    assert counts == {"keras": 0, "lean": 3}


def _assert_stock(monkeypatch, model):
    counts = _count_steps(monkeypatch)
    assert not model.fast_path
    assert _ours(model) == []
    assert type(model.backbone.blocks[0]) is keras.layers.Conv2D and type(model.neck) is keras.layers.Dense
    assert type(model.neck_bn) is keras.layers.BatchNormalization
    _train(model)
    assert counts == {"keras": 3, "lean": 0}


def test_cuda_device_builds_stock_layers_and_trains_with_keras_train_step(monkeypatch):
    """Catches the speed layers or the lean step (which skips ``Layer.__call__``, where Keras moves batches to
    the GPU) chosen on a CUDA device: the model must hold the stock Keras classes and train through Keras'
    own ``train_step``. (The device is simulated: the model then trains on this CPU.)"""
    monkeypatch.setattr(fast_path, "current_device", lambda: "cuda:0")
    m = _model()
    assert "cuda" in m.fast_path.reason
    _assert_stock(monkeypatch, m)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_builds_stock_layers_and_trains_with_keras_train_step(monkeypatch, policy):
    """Catches the speed layers built or the lean step taken under a mixed dtype policy."""
    keras.config.set_dtype_policy(policy)
    try:
        m = _model()
        assert policy in m.fast_path.reason
        _assert_stock(monkeypatch, m)
    finally:
        keras.config.set_dtype_policy("float32")


def test_another_keras_version_is_off_with_exactly_one_warning(monkeypatch):
    """Catches a fast path taken on an untested Keras, a silent fallback (no warning), and a warning repeated
    for every model or layer built."""
    monkeypatch.setattr(keras, "__version__", "3.99.0")
    monkeypatch.setattr(fast_path, "_warned", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a, b = _model(), _model("efficientnet_lite0")
    ours = [w for w in caught if "speed layers" in str(w.message)]
    assert len(ours) == 1 and "3.99.0" in str(ours[0].message)
    assert not a.fast_path and not b.fast_path
    assert _ours(b) == []  # EfficientNet-Lite0's functional backbone too
    _assert_stock(monkeypatch, a)


def test_speed_layers_defer_to_layer_call_where_the_process_is_off(monkeypatch):
    """Catches a speed layer (as loaded from a saved bundle's config) that bypasses ``Layer.__call__`` where
    the process may not take the fast path (a GPU, another Keras): it must run Keras' own ``__call__`` and
    ``call``, with the stock layer's result."""
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(4, 6)).astype("float32"))
    dense = fl.Dense(3)
    dense.build(x.shape)
    stock = keras.layers.Dense(3)
    stock.build(x.shape)
    stock.set_weights(dense.get_weights())
    calls = []
    layer_call = keras.layers.Layer.__call__

    def spy(self, *args, **kwargs):
        calls.append(type(self))
        return layer_call(self, *args, **kwargs)

    monkeypatch.setattr(keras.layers.Layer, "__call__", spy)
    assert fl._fast_ok(dense, x)
    dense(x)
    assert calls == []  # on: the lean call, no Layer.__call__
    monkeypatch.setattr(fl, "_SCOPES", None)  # what fast_layers computes at import on a GPU or another Keras
    assert not fl._fast_ok(dense, x)
    torch.testing.assert_close(dense(x), stock(x), atol=0, rtol=0)
    assert calls == [fl.Dense, keras.layers.Dense]


def test_speed_layers_take_only_cpu_tensors():
    """Catches the per-call device check removed: a float32 tensor on another device (here torch's "meta"
    device) must go through ``Layer.__call__``, which moves inputs to the variables' device."""
    dense = fl.Dense(3)
    dense.build((4, 6))
    assert fl._fast_ok(dense, torch.zeros(4, 6))
    assert not fl._fast_ok(dense, torch.zeros(4, 6, device="meta"))
