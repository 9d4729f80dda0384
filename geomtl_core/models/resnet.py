"""ResNet-50 backbone in plain Keras 3 layers, with ImageNet weights ported from a torchvision state_dict.

torchvision's ``resnet50`` (v1.5: the stride sits on the 3x3 conv of each bottleneck) is rebuilt layer by layer
so :func:`port_torchvision_resnet50` can copy its weights one to one. The weights are read from a local ``.pth``
(an explicit path, or torchvision's own cache) and never downloaded.

Architecture notes (checked against ``torchvision.models.resnet``):

* torch pads symmetrically (7x7/2 stem conv: 3, 3x3/2 max-pool and strided 3x3 convs: 1); Keras' ``"same"``
  pads asymmetrically for strided layers, so those use an explicit ZeroPadding2D and ``"valid"``. Zero padding
  before the max-pool equals torch's -inf padding because its input is a ReLU output (>= 0).
* BatchNorm epsilon 1e-5; torch momentum 0.1 equals Keras ``momentum=0.9``. The BN layers are
  :class:`~geomtl_core.models.sync_bn.SyncBatchNormalization` (plain BatchNorm unless data-parallel with
  ``model.sync_bn``).
* Input and output are channels_last; the layers run channels_first (one Permute at each end), as in
  :mod:`~geomtl_core.models.effnet_lite`, because Keras' torch backend transposes NHWC around every conv.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from geomtl_core.models.sync_bn import SyncBatchNormalization

import keras  # geomtl_core/__init__ has already selected the torch backend
import numpy as np

__all__ = [
    "RESNET50_PREPROCESS",
    "RESNET50_STAGES",
    "load_resnet50_weights",
    "port_torchvision_resnet50",
    "resnet50",
    "resnet50_weights_path",
]

#: torchvision's ImageNet normalisation in 0-255 units: ``x_norm = (x - mean) / std`` per RGB channel.
RESNET50_PREPROCESS: dict[str, tuple[float, float, float]] = {
    "mean": (0.485 * 255, 0.456 * 255, 0.406 * 255),
    "std": (0.229 * 255, 0.224 * 255, 0.225 * 255),
}

#: Stages as (bottleneck blocks, width, first stride); the block output has 4 x width channels.
RESNET50_STAGES: tuple[tuple[int, int, int], ...] = ((3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2))
_EXPANSION = 4
_FMT = "channels_first"  # internal layout (see module docstring); inputs/outputs stay channels_last
_AXIS = 1
_BN_EPS = 1e-5
_BN_MOMENTUM = 0.9
#: Environment variable naming a torchvision ``resnet50`` ``.pth`` (``build_backbone`` reads it).
WEIGHTS_ENV = "GEOMTL_RESNET50_WEIGHTS"
#: torchvision's IMAGENET1K_V1 files (new and old name): GeoEstimation's ``pretrained=True``; preferred in the cache.
V1_FILES = ("resnet50-0676ba61.pth", "resnet50-19c8e357.pth")


def resnet50_weights_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The ``.pth`` to load: ``path`` if given, else ``<torch hub dir>/checkpoints/resnet50-*.pth`` (V1 first)."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"ResNet-50 weights file not found: {p}")
        return p
    import torch

    cache = Path(torch.hub.get_dir()) / "checkpoints"
    found = sorted(cache.glob("resnet50-*.pth"), key=lambda p: (p.name not in V1_FILES, p.name))
    if not found:
        raise FileNotFoundError(
            f"no ImageNet ResNet-50 weights: none given (argument or ${WEIGHTS_ENV}) and no resnet50-*.pth in "
            f"torchvision's cache {cache}. Put torchvision's resnet50 .pth (IMAGENET1K_V1, {V1_FILES[0]}, as "
            "GeoEstimation used) in one of these places; geomtl never downloads weights"
        )
    return found[0]


def load_resnet50_weights(path: str | os.PathLike[str] | None = None) -> dict[str, np.ndarray]:
    """A torchvision resnet50 state_dict (read with ``weights_only=True``) as float32 numpy arrays, no download."""
    import torch

    sd = torch.load(resnet50_weights_path(path), map_location="cpu", weights_only=True)
    return {k: v.detach().cpu().float().numpy() for k, v in sd.items() if not k.endswith("num_batches_tracked")}


def _conv_bn(x: Any, name: str, filters: int, kernel: int, stride: int = 1, relu: bool = True) -> Any:
    """Conv (no bias, torch's symmetric padding) + BN (eps 1e-5) + optional ReLU: torchvision's repeated unit."""
    pad = kernel // 2
    if pad and stride > 1:
        x = keras.layers.ZeroPadding2D(pad, data_format=_FMT, name=f"{name}_pad")(x)
    x = keras.layers.Conv2D(
        filters, kernel, strides=stride, padding="valid" if stride > 1 or not pad else "same", use_bias=False,
        data_format=_FMT, name=f"{name}_conv",
    )(x)
    x = SyncBatchNormalization(axis=_AXIS, epsilon=_BN_EPS, momentum=_BN_MOMENTUM, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _bottleneck(x: Any, name: str, width: int, stride: int, downsample: bool) -> Any:
    """1x1 reduce, 3x3 (strided, v1.5), 1x1 expand x4, plus the identity or a 1x1 strided projection."""
    shortcut = _conv_bn(x, f"{name}_down", width * _EXPANSION, 1, stride, relu=False) if downsample else x
    y = _conv_bn(x, f"{name}_1", width, 1)
    y = _conv_bn(y, f"{name}_2", width, 3, stride)
    y = _conv_bn(y, f"{name}_3", width * _EXPANSION, 1, relu=False)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def _layer_map() -> dict[str, str]:
    """Keras name prefix -> "torch conv|torch BN", e.g. ``stage2_block0_down`` -> ``layer2.0.downsample.0|.1``."""
    m = {"stem": "conv1|bn1"}
    for s, (blocks, _w, _st) in enumerate(RESNET50_STAGES, start=1):
        for b in range(blocks):
            k, t = f"stage{s}_block{b}", f"layer{s}.{b}"
            for i in (1, 2, 3):
                m[f"{k}_{i}"] = f"{t}.conv{i}|{t}.bn{i}"
            if b == 0:
                m[f"{k}_down"] = f"{t}.downsample.0|{t}.downsample.1"
    return m


def port_torchvision_resnet50(model: keras.Model, state_dict: dict[str, Any]) -> None:
    """Copy a torchvision resnet50 state_dict into :func:`resnet50`: conv OIHW->HWIO, BN weight/bias/mean/var.

    ``fc.*`` (the ImageNet classifier) and ``num_batches_tracked`` are ignored; any other unused or missing
    tensor is an error.
    """
    sd = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v, dtype=np.float32)
          for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
    used: set[str] = set()
    for kname, pair in _layer_map().items():
        conv, bn = pair.split("|")
        model.get_layer(f"{kname}_conv").set_weights([sd[f"{conv}.weight"].transpose(2, 3, 1, 0)])
        model.get_layer(f"{kname}_bn").set_weights(
            [sd[f"{bn}.{s}"] for s in ("weight", "bias", "running_mean", "running_var")]
        )
        used |= {f"{conv}.weight"} | {f"{bn}.{s}" for s in ("weight", "bias", "running_mean", "running_var")}
    left = sorted(k for k in sd if k not in used and not k.startswith("fc."))
    if left:
        raise ValueError(f"unported torch weights: {left[:5]}")


def resnet50(
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    weights: str | os.PathLike[str] | dict[str, Any] | None = None,
    name: str = "resnet50",
) -> keras.Model:
    """ResNet-50 feature extractor: (B, H, W, 3) normalised RGB -> (B, H/32, W/32, 2048) after the last ReLU.

    Inputs are channels_last and normalised with ``RESNET50_PREPROCESS`` (the model holds no preprocessing).
    ``weights``: None (random init), a ``.pth`` path, or a state_dict, ported from torchvision's layout.
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Permute((3, 1, 2), name="to_nchw")(inputs)
    x = _conv_bn(x, "stem", 64, 7, stride=2)
    x = keras.layers.ZeroPadding2D(1, data_format=_FMT, name="pool_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, data_format=_FMT, name="pool")(x)
    for s, (blocks, width, stride) in enumerate(RESNET50_STAGES, start=1):
        for b in range(blocks):
            x = _bottleneck(x, f"stage{s}_block{b}", width, stride if b == 0 else 1, downsample=b == 0)
    x = keras.layers.Permute((2, 3, 1), name="to_nhwc")(x)
    model = keras.Model(inputs, x, name=name)
    if weights is not None:
        port_torchvision_resnet50(model, weights if isinstance(weights, dict) else load_resnet50_weights(weights))
    return model
