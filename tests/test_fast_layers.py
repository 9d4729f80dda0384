"""The single-kernel layers of ``geomtl_core.models.fast_layers`` and GeoMTLModel's lean train step are
numerically the stock Keras layers / Keras' train step (issue #15), and old bundles still load."""

from __future__ import annotations

import geomtl_core  # noqa: F401  (selects the torch backend)
from geomtl_core.models import fast_layers as fl
from geomtl_core.models import fast_path, metrics, train_steps
from geomtl_core.models.multitask import GeoMTLModel, compile_model

import keras
import numpy as np
import pytest
import torch

ATOL = 1e-5


def _pair(stock_cls, fast_cls, input_shape, seed=0, **kwargs):
    """A stock and a fast layer, built, with the same (random, non-trivial) weights."""
    rng = np.random.default_rng(seed)
    a, b = stock_cls(**kwargs), fast_cls(**kwargs)
    a.build(input_shape)
    b.build(input_shape)
    weights = [w + rng.normal(size=w.shape).astype("float32") * 0.3 for w in a.get_weights()]
    if isinstance(a, keras.layers.BatchNormalization):  # keep the moving variance positive
        weights = [np.abs(w) + 0.5 if i == len(weights) - 1 else w for i, w in enumerate(weights)]
    a.set_weights(weights)
    b.set_weights(weights)
    return a, b


def _run(layer, x, weights_of, **call_kwargs):
    """Output, input gradient and trainable-weight gradients of sum(output * r)."""
    x = x.clone().requires_grad_()
    y = layer(x, **call_kwargs)
    r = torch.from_numpy(np.random.default_rng(1).normal(size=tuple(y.shape)).astype("float32"))
    for v in weights_of.trainable_weights:
        v.value.grad = None
    (y * r).sum().backward()
    return y.detach(), x.grad, [v.value.grad.clone() for v in weights_of.trainable_weights]


def _assert_same(a, b, x, **call_kwargs):
    ya, gxa, gwa = _run(a, x, a, **call_kwargs)
    yb, gxb, gwb = _run(b, x, b, **call_kwargs)
    assert ya.shape == yb.shape
    torch.testing.assert_close(yb, ya, atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(gxb, gxa, atol=ATOL, rtol=1e-5)
    assert len(gwa) == len(gwb)
    for p, q in zip(gwa, gwb, strict=True):
        torch.testing.assert_close(q, p, atol=1e-4, rtol=1e-5)
    return yb


def _x(shape, seed=2):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=shape).astype("float32"))


@pytest.mark.parametrize(("size", "kernel", "stride", "padding", "bias"), [
    (16, 3, 2, "same", False),   # asymmetric TF "same" (pad 0 before, 1 after)
    (15, 3, 2, "same", True),    # odd size: symmetric
    (16, 3, 1, "same", True),
    (16, 5, 2, "same", False),   # pad 1 before, 2 after
    (16, 1, 1, "same", False),
    (16, 3, 2, "valid", True),
])
def test_conv2d_matches_stock(size, kernel, stride, padding, bias):
    kw = {"filters": 7, "kernel_size": kernel, "strides": stride, "padding": padding, "use_bias": bias}
    a, b = _pair(keras.layers.Conv2D, fl.Conv2D, (4, size, size, 5), **kw)
    y = _assert_same(a, b, _x((4, size, size, 5)))
    assert y.shape[1] == (-(-size // stride) if padding == "same" else (size - kernel) // stride + 1)


def test_conv2d_channels_first_and_activation_match_stock():
    kw = {"filters": 6, "kernel_size": 3, "strides": 2, "padding": "same", "data_format": "channels_first",
          "activation": "relu"}
    a, b = _pair(keras.layers.Conv2D, fl.Conv2D, (2, 4, 12, 12), **kw)
    _assert_same(a, b, _x((2, 4, 12, 12)))


@pytest.mark.parametrize(("kernel", "stride", "mult"), [(3, 1, 1), (5, 2, 1), (3, 2, 2)])
def test_depthwise_conv2d_matches_stock(kernel, stride, mult):
    kw = {"kernel_size": kernel, "strides": stride, "padding": "same", "depth_multiplier": mult, "use_bias": False}
    a, b = _pair(keras.layers.DepthwiseConv2D, fl.DepthwiseConv2D, (3, 16, 16, 6), **kw)
    _assert_same(a, b, _x((3, 16, 16, 6)))


@pytest.mark.parametrize("shape", [(8, 12), (2, 5, 12)])
def test_dense_matches_stock(shape):
    a, b = _pair(keras.layers.Dense, fl.Dense, shape, units=9)
    _assert_same(a, b, _x(shape))


@pytest.mark.parametrize(("shape", "kw"), [
    ((6, 8, 8, 5), {"momentum": 0.9}),
    ((6, 8, 8, 5), {"momentum": 0.99, "epsilon": 1e-3, "center": False}),
    ((6, 5, 8, 8), {"axis": 1, "momentum": 0.9, "epsilon": 0.1, "scale": False}),
    ((32, 7), {"momentum": 0.9}),
])
def test_batchnorm_matches_stock_outputs_gradients_and_moving_statistics(shape, kw):
    a, b = _pair(keras.layers.BatchNormalization, fl.BatchNormalization, shape, **kw)
    for step in range(3):  # training: batch statistics, and the moving statistics updated each step
        x = _x(shape, seed=10 + step) * 2.0 + 1.0
        _assert_same(a, b, x, training=True)
        for va, vb in zip(a.non_trainable_weights, b.non_trainable_weights, strict=True):
            np.testing.assert_allclose(vb.numpy(), va.numpy(), atol=1e-6, rtol=1e-6)
    moving = a.non_trainable_weights[1].numpy()
    assert not np.allclose(moving, np.abs(moving).mean())  # the variances really moved apart
    _assert_same(a, b, _x(shape, seed=20), training=False)  # inference: the moving statistics


def test_batchnorm_moving_variance_is_keras_biased_update():
    """moving = m * moving + (1 - m) * biased batch variance (torch's own update uses the unbiased one)."""
    layer = fl.BatchNormalization(momentum=0.8)
    x = _x((4, 3), seed=3)
    layer.build(x.shape)
    layer(x, training=True)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.8 + 0.2 * x.numpy().var(axis=0), rtol=1e-6)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.2 * x.numpy().mean(axis=0), rtol=1e-6, atol=1e-7)


def test_batchnorm_layer_called_twice_in_one_graph_backpropagates():
    layer = fl.BatchNormalization()
    x = _x((8, 4)).requires_grad_()
    layer.build(x.shape)
    (layer(x, training=True).sum() + layer(x * 2, training=True).sum()).backward()
    assert x.grad is not None


def test_same_symmetric_is_torch_padding_and_keeps_the_output_shape():
    x = _x((2, 16, 16, 3))
    layer = fl.Conv2D(4, 3, strides=2, padding="same_symmetric", use_bias=False)
    y = layer(x)
    ref = torch.nn.functional.conv2d(x.permute(0, 3, 1, 2), layer.kernel.value.permute(3, 2, 0, 1), stride=2,
                                     padding=1).permute(0, 2, 3, 1)
    torch.testing.assert_close(y, ref)
    assert tuple(y.shape) == tuple(keras.layers.Conv2D(4, 3, strides=2, padding="same")(x).shape)
    # symbolic (functional) build and the Keras-ops fallback give the same shape and values
    inputs = keras.Input((16, 16, 3))
    assert tuple(layer(inputs).shape) == (None, 8, 8, 4)
    torch.testing.assert_close(layer._symbolic_call(x), y, atol=ATOL, rtol=1e-5)
    assert layer.get_config()["padding"] == "same_symmetric"
    assert fl.Conv2D.from_config(layer.get_config()).symmetric_padding
    with pytest.raises(ValueError, match="odd kernel"):
        fl.Conv2D(4, 2, padding="same_symmetric")


def test_lean_layers_match_stock():
    x = _x((4, 6, 6, 3)) * 100
    for stock, fast, kw in [(keras.layers.ReLU, fl.ReLU, {}), (keras.layers.ReLU, fl.ReLU, {"max_value": 6.0}),
                            (keras.layers.GlobalAveragePooling2D, fl.GlobalAveragePooling2D, {}),
                            (keras.layers.Rescaling, fl.Rescaling, {"scale": 1 / 128.0, "offset": -127 / 128.0}),
                            (keras.layers.Identity, fl.Identity, {})]:
        torch.testing.assert_close(fast(**kw)(x), stock(**kw)(x), atol=0, rtol=0)


# ---- whole models -----------------------------------------------------------------------------------------

HEADS, SCENE = {"coarse": 5, "fine": 9}, {"s3": 3}


def _stock_layers(monkeypatch):
    """Make the model builders take the stock Keras layers (as before issue #15): the fast path decided off."""
    off = fast_path.FastPath(False, "test: stock layers")
    monkeypatch.setattr(fast_path, "fast_path_enabled", lambda *a, **k: off)


def _data(n=16, size=32, seed=0):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.integers(0, 255, (n, size, size, 3)).astype(np.uint8))
    y = {t: torch.from_numpy(rng.integers(0, c, n)) for t, c in {**HEADS, **SCENE}.items()}
    y["fine"][:3] = -1  # masked labels: the weighted branch of the loss
    return x, y


def _model(**kw):
    """A tiny model without dropout (random masks would differ between the two models compared), seeded: with
    an unseeded init about 1 run in 40 put a pre-activation so near 0 that float32 reassociation flipped its
    ReLU within the 4 training steps compared, and the two trajectories parted by > 1e-4."""
    keras.utils.set_random_seed(0)
    m = GeoMTLModel(HEADS, SCENE, backbone="small_cnn", input_size=32, width=0.25, dropout=0.0, **kw)
    m(torch.zeros((1, 32, 32, 3), dtype=torch.uint8))
    return m


def _train(model, x, y, steps=4, lean=True, sample_weight=None):
    model.lean_train_step = lean
    compile_model(model, keras.optimizers.SGD(0.05, momentum=0.9))
    model.reset_metrics()
    model.make_train_function()
    fn = model.train_function
    data = (x, y) if sample_weight is None else (x, y, sample_weight)
    for _ in range(steps):
        fn([data])
    return {k: float(v) for k, v in model.get_metrics_result().items()}


def _assert_same_weights(a, b, atol=ATOL):
    def rel(v):
        return v.path.split("/", 1)[1]

    assert [rel(v) for v in a.weights] == [rel(v) for v in b.weights]
    for va, vb in zip(a.weights, b.weights, strict=True):
        np.testing.assert_allclose(vb.numpy(), va.numpy(), atol=atol, rtol=1e-4, err_msg=va.path)


@pytest.mark.parametrize(("weighting", "sample_weight"), [("fixed", False), ("learned", False), ("fixed", True)])
def test_lean_train_step_equals_keras_train_step(weighting, sample_weight):
    x, y = _data()
    sw = torch.linspace(0.5, 1.5, len(x)) if sample_weight else None
    lean, std = _model(loss_weighting=weighting), _model(loss_weighting=weighting)
    std.set_weights(lean.get_weights())
    logs_lean = _train(lean, x, y, lean=True, sample_weight=sw)
    logs_std = _train(std, x, y, lean=False, sample_weight=sw)
    _assert_same_weights(lean, std)
    assert logs_lean.keys() == logs_std.keys()
    for k in logs_std:
        assert logs_lean[k] == pytest.approx(logs_std[k], rel=1e-5, abs=1e-6), k
    if weighting == "learned":
        assert np.abs(lean.log_vars.numpy()).max() > 0  # the learned loss weights did train


def test_lean_train_step_logs_refresh_on_reset_and_every_log_every_steps():
    x, y = _data()
    m = _model()
    compile_model(m, keras.optimizers.SGD(0.05))
    m.train_on_batch(x, y)
    m.reset_metrics()
    m.make_train_function()
    fn = m.train_function
    first = fn([(x, y)])
    assert fn([(x, y)]) is first  # no rebuild between refreshes
    m.log_every = 2
    assert fn([(x, y)]) is not first
    # train_on_batch resets the metrics every call: its logs are always the current batch's
    a, b = m.train_on_batch(x, y, return_dict=True), m.train_on_batch(x, y, return_dict=True)
    assert a["loss"] != b["loss"]


def test_fast_layers_train_like_the_stock_layers(monkeypatch):
    """Same weights in, the same weights (and BN moving statistics) out after Keras' own train steps."""
    x, y = _data()
    fast = _model()
    with monkeypatch.context() as mp:
        _stock_layers(mp)
        stock = _model()
    assert not isinstance(stock.backbone.blocks[0], fl.Conv2D)
    stock.set_weights(fast.get_weights())
    _train(fast, x, y, lean=False)
    _train(stock, x, y, lean=False)
    _assert_same_weights(fast, stock, atol=1e-4)


@pytest.mark.parametrize("backbone", ["small_cnn", "efficientnet_lite0"])
def test_bundles_saved_with_stock_layers_load_and_predict_identically(monkeypatch, tmp_path, backbone):
    x, _ = _data(n=4)
    with monkeypatch.context() as mp:
        _stock_layers(mp)
        old = GeoMTLModel(HEADS, SCENE, backbone=backbone, input_size=32, width=0.25)
        old(x)
        rng = np.random.default_rng(5)
        old.set_weights([w + rng.normal(size=w.shape).astype("float32") * 0.05 for w in old.get_weights()])
        with torch.no_grad():
            expected = {k: v.numpy() for k, v in old(x, training=False).items()}
        old.save(tmp_path / "old.keras")
    new = keras.saving.load_model(tmp_path / "old.keras", safe_mode=True)
    layers = new.backbone.blocks if backbone == "small_cnn" else new.backbone.layers
    assert any(isinstance(layer, fl.Conv2D) for layer in layers)
    with torch.no_grad():
        got = new(x, training=False)
    for k, v in expected.items():
        np.testing.assert_allclose(got[k].numpy(), v, atol=1e-5, rtol=1e-5)


def test_same_symmetric_model_round_trip(tmp_path):
    x, y = _data(n=8)
    m = _model(conv_padding="same_symmetric")
    compile_model(m, keras.optimizers.SGD(0.05))
    m.train_on_batch(x, y)
    m.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert back.conv_padding == "same_symmetric" and back.backbone.blocks[0].symmetric_padding
    with torch.no_grad():
        a, b = m(x, training=False), back(x, training=False)
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=1e-6)
    # the default stays Keras "same": a different network from the symmetric one
    assert _model().backbone.blocks[0].symmetric_padding is False


def test_mixed_precision_takes_keras_path():
    x, y = _data(n=8)
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        m = _model(conv_padding="same_symmetric")
        compile_model(m, keras.optimizers.SGD(0.05))
        logs = m.train_on_batch(x, y, return_dict=True)
        assert not train_steps.lean_applies(m) and not m.fast_path
        assert np.isfinite(logs["loss"])
    finally:
        keras.config.set_dtype_policy("float32")


def test_optimizers_saved_as_geomtl_sgd_still_load():
    """Catches the removal of the name ``geomtl>SGD`` (the fused SGD is gone, issue #22): checkpoints and bundles
    saved with it must still deserialise, as Keras' own SGD with the same settings."""
    import geomtl_core.models.optimizers  # noqa: F401 - registers the name

    config = {"module": None, "class_name": "geomtl>SGD", "registered_name": "geomtl>SGD",
              "config": {"name": "SGD", "learning_rate": 0.05, "momentum": 0.9, "nesterov": True}}
    opt = keras.optimizers.deserialize(config)
    assert isinstance(opt, keras.optimizers.SGD) and opt.momentum == 0.9 and opt.nesterov
    assert type(opt)._backend_update_step is keras.optimizers.SGD._backend_update_step  # Keras' update


def test_top1_hit_counts_are_argmax_counts():
    """amax + gather counts what argmax counts: masked labels never hit, constant rows take argmax's first
    index (a collapsed network must not read as 100% accurate)."""
    gen = torch.Generator().manual_seed(0)
    logits = [torch.randn(32, n, generator=gen) for n in (7, 50, 3)]
    target = torch.stack([torch.randint(0, x.shape[1], (32,), generator=gen) for x in logits])
    for i, x in enumerate(logits):  # make some rows hit
        target[i, :10] = x[:10].argmax(dim=1)
    target[1, 5] = -1  # a hit made unlabelled
    labelled = target >= 0

    def expected():
        return torch.stack([((x.argmax(dim=1) == target[i]) & labelled[i]).sum() for i, x in enumerate(logits)])

    got = metrics.top1_hit_counts(logits, target, labelled)
    assert got.dtype == torch.float32 and got.tolist() == expected().float().tolist()
    assert got[0] >= 10 and got[1] >= 9
    logits[1][3] = 0.25  # a constant row: argmax says class 0
    target[1, 3] = 7
    got = metrics.top1_hit_counts(logits, target, labelled)
    assert got.tolist() == expected().float().tolist()


@pytest.mark.parametrize("cls", [fl.Conv2D, fl.DepthwiseConv2D])
def test_conv_kernels_live_in_torch_memory_order_with_keras_shapes_and_values(cls):
    """The kernel keeps Keras' shape and values (get/set_weights, saving) while its OIHW view is
    channels_last (Conv2D) or contiguous (depthwise), and stays so after set_weights."""
    kwargs = {"filters": 6} if cls is fl.Conv2D else {"depth_multiplier": 2}
    layer = cls(kernel_size=3, padding="same", use_bias=False, **kwargs)
    x = _x((2, 8, 8, 4))
    layer(x)
    k = layer.kernel._value
    kh, kw, cin, cout = k.shape
    view = (k.permute(3, 2, 0, 1) if cls is fl.Conv2D else k.reshape(kh, kw, 1, cin * cout).permute(3, 2, 0, 1))
    fmt = torch.channels_last if cls is fl.Conv2D else torch.contiguous_format
    assert view.is_contiguous(memory_format=fmt)
    new = np.arange(k.numel(), dtype="float32").reshape(tuple(k.shape)) / k.numel()
    layer.set_weights([new])
    np.testing.assert_array_equal(layer.get_weights()[0], new)
    assert layer.kernel._value.stride() == k.stride()
    stock = (keras.layers.Conv2D if cls is fl.Conv2D else keras.layers.DepthwiseConv2D)(
        kernel_size=3, padding="same", use_bias=False, **kwargs)
    stock.build(x.shape)
    stock.set_weights([new])
    torch.testing.assert_close(layer(x), stock(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backbone", ["small_cnn", "efficientnet_lite0"])
def test_uint8_batches_are_normalised_as_cast_then_rescale(backbone):
    m = GeoMTLModel(HEADS, SCENE, backbone=backbone, input_size=32, width=0.25)
    x, _ = _data(n=4)
    m(x)
    fused = m.normalise.from_uint8(x)
    assert fused is not None and fused.dtype == torch.float32
    torch.testing.assert_close(fused, m.normalise(x.float()), atol=0, rtol=0)


def test_first_fast_call_under_inference_mode_leaves_a_trainable_kernel():
    layer = fl.Conv2D(6, 3, padding="same")
    x = _x((2, 8, 8, 4))
    layer.build(x.shape)
    with torch.inference_mode():
        layer(x)
    layer(x).sum().backward()  # "Inference tensors cannot be saved for backward" if the kernel became one
    assert layer.kernel._value.grad is not None and not layer.kernel._value.is_inference()


def test_batchnorm_error_leaves_the_moving_statistics_untouched():
    bn = fl.BatchNormalization(momentum=0.9)
    bn.build((None, 5, 5, 7))
    before = [w.copy() for w in bn.get_weights()]
    with pytest.raises(Exception):  # noqa: B017 - Keras' input-spec error for the wrong channel count
        bn(_x((4, 5, 5, 6)), training=True)
    for a, b in zip(before, bn.get_weights(), strict=True):
        np.testing.assert_array_equal(b, a)
