"""The backbones of the model builder: a feature extractor (image float in [0, 255] -> feature map) and its
input normaliser for each name in :data:`BACKBONES`."""

from __future__ import annotations

from geomtl_core.errors import InputError
from geomtl_core.models.fast_layers import layer_set
from geomtl_core.models.fast_path import fast_path_now
from geomtl_core.models.seeds import kernel_init

import keras  # the backend was chosen by importing geomtl_core (its __init__)
from keras import layers

__all__ = ["BACKBONES", "SmallCNN", "build_backbone"]

BACKBONES = ("small_cnn", "mobilenetv3small", "efficientnet_lite0", "efficientnetb0", "resnet50", "features")


@keras.saving.register_keras_serializable(package="geomtl")
class SmallCNN(keras.layers.Layer):
    """Four strided conv blocks (32·w … 256·w channels): the fast backbone for tests and ablations.

    ``padding="same"`` is Keras/TensorFlow "same" (what bundles saved before the option hold);
    ``"same_symmetric"`` pads 1 on every side like torch's ``padding=1``: no pad copy, a little faster to train,
    but a different network (the stride-2 windows sit one pixel earlier). Conv and BN run as single torch
    kernels (``fast_layers``) where ``fast_path`` allows it (``fast``: None decides now), else as the stock
    Keras layers; variables and layer names are the stock layers', so old bundles load."""

    def __init__(self, width: float = 1.0, padding: str = "same", fast: bool | None = None, seed: int | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        if width <= 0:
            raise InputError(f"width must be > 0, received: width={width}")
        if padding not in ("same", "same_symmetric"):
            raise InputError(f"padding must be 'same' or 'same_symmetric', received: {padding!r}")
        self.width, self.padding, self.seed = width, padding, seed
        fl = layer_set(bool(fast_path_now()) if fast is None else fast)
        self.blocks = []
        for k, ch in enumerate((32, 64, 128, 256)):
            self.blocks += [
                fl.Conv2D(max(8, int(ch * width)), 3, strides=2, padding=padding, use_bias=False,
                          kernel_initializer=kernel_init(seed, f"conv{k}"), name=f"conv{k}"),
                fl.BatchNormalization(momentum=0.9, name=f"bn{k}"),
                fl.ReLU(name=f"relu{k}"),
            ]

    def call(self, x, training=False):
        for layer in self.blocks:
            x = layer(x, training=training)
        return x

    def get_config(self):
        return {**super().get_config(), "width": self.width, "padding": self.padding, "seed": self.seed}


def build_backbone(name: str, input_size: int, width: float = 1.0, pretrained: bool = False,
                   conv_padding: str = "same", fast: bool | None = None, seed: int | None = None):
    """A feature extractor (image float in [0, 255] -> feature map) and its input normaliser
    (``conv_padding``: small_cnn's, see ``SmallCNN``; ``fast``: the speed layers, None: ``fast_path`` decides;
    ``seed``: every layer's initialisation from it, ``models.seeds``, except keras.applications' MobileNetV3)."""
    fast = bool(fast_path_now()) if fast is None else fast
    fl = layer_set(fast)
    shape = (input_size, input_size, 3)
    if name == "features":  # inputs are already pooled backbone features (see geomtl_core.data.features)
        return fl.Identity(name="backbone"), fl.Identity(name="normalise")
    if name == "small_cnn":
        net = SmallCNN(width, conv_padding, fast=fast, seed=seed, name="backbone")
        return net, fl.Rescaling(1 / 255.0, name="normalise")
    if name == "mobilenetv3small":
        net = keras.applications.MobileNetV3Small(
            input_shape=shape, alpha=width, include_top=False, weights=None, include_preprocessing=False,
        )
        return net, layers.Rescaling(1 / 127.5, offset=-1.0, name="normalise")
    if name == "efficientnet_lite0":
        from geomtl_core.models.effnet_lite import EFFNET_LITE0_PREPROCESS, efficientnet_lite0

        mean, std = EFFNET_LITE0_PREPROCESS["mean"], EFFNET_LITE0_PREPROCESS["std"]
        if len(set(mean)) != 1 or len(set(std)) != 1:
            raise InputError("efficientnet_lite0 expects one mean and std for all channels")
        # Rescaling, not Normalization: a Normalization given constants and first built inside the
        # model's symbolic build keeps them on torch's "meta" device and then outputs NaN.
        norm = fl.Rescaling(1.0 / std[0], offset=-mean[0] / std[0], name="normalise")
        return efficientnet_lite0(shape, pretrained=pretrained, fast=fast, seed=seed), norm
    if name == "resnet50":  # torchvision's architecture; ImageNet weights from a local torchvision .pth
        import os

        from geomtl_core.models.resnet import (
            RESNET50_PREPROCESS,
            WEIGHTS_ENV,
            load_resnet50_weights,
            port_torchvision_resnet50,
            resnet50,
        )

        mean, std = RESNET50_PREPROCESS["mean"], RESNET50_PREPROCESS["std"]
        # float32 even under a mixed policy: bf16 would round 0-255 inputs before they are normalised
        norm = layers.Rescaling([1.0 / s for s in std], offset=[-m / s for m, s in zip(mean, std, strict=True)],
                                dtype="float32", name="normalise")
        net = resnet50(shape)
        if pretrained:  # $GEOMTL_RESNET50_WEIGHTS, else torchvision's cache; FileNotFoundError naming both
            port_torchvision_resnet50(net, load_resnet50_weights(os.environ.get(WEIGHTS_ENV) or None))
        return net, norm
    if name == "efficientnetb0":
        cls = keras.applications.EfficientNetB0
        if pretrained:
            raise InputError(
                f"pretrained {name} needs ImageNet weights from the internet; use efficientnet_lite0 "
                "(weights ship with the install) or load your own weights file"
            )
        net = cls(input_shape=shape, include_top=False, weights=None)
        return net, layers.Identity(name="normalise")
    raise InputError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
