"""The multi-task network: backbone -> shared neck -> one softmax head per partitioning and per
scene level, with fixed or learned (homoscedastic uncertainty) loss weights. Keras 3, torch backend."""

from __future__ import annotations

from geomtl_core.errors import InputError

import keras  # the backend was chosen by importing geomtl_core (its __init__)
from keras import layers, ops

BACKBONES = ("small_cnn", "mobilenetv3small", "efficientnet_lite0", "efficientnetb0", "resnet50", "features")


@keras.saving.register_keras_serializable(package="geomtl")
class SmallCNN(keras.layers.Layer):
    """Four strided conv blocks (32·w … 256·w channels): the fast backbone for tests and ablations."""

    def __init__(self, width: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if width <= 0:
            raise InputError(f"width must be > 0, received: width={width}")
        self.width = width
        self.blocks = []
        for k, ch in enumerate((32, 64, 128, 256)):
            self.blocks += [
                layers.Conv2D(max(8, int(ch * width)), 3, strides=2, padding="same", use_bias=False, name=f"conv{k}"),
                layers.BatchNormalization(momentum=0.9, name=f"bn{k}"),
                layers.ReLU(name=f"relu{k}"),
            ]

    def call(self, x, training=False):
        for layer in self.blocks:
            x = layer(x, training=training)
        return x

    def get_config(self):
        return {**super().get_config(), "width": self.width}


def build_backbone(name: str, input_size: int, width: float = 1.0, pretrained: bool = False):
    """A feature extractor (image float in [0, 255] -> feature map) and its input normaliser."""
    shape = (input_size, input_size, 3)
    if name == "features":  # inputs are already pooled backbone features (see geomtl_core.data.features)
        return layers.Identity(name="backbone"), layers.Identity(name="normalise")
    if name == "small_cnn":
        return SmallCNN(width, name="backbone"), layers.Rescaling(1 / 255.0, name="normalise")
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
        norm = layers.Rescaling(1.0 / std[0], offset=-mean[0] / std[0], name="normalise")
        return efficientnet_lite0(shape, pretrained=pretrained), norm
    if name in ("efficientnetb0", "resnet50"):
        cls = keras.applications.EfficientNetB0 if name == "efficientnetb0" else keras.applications.ResNet50
        if pretrained:
            raise InputError(
                f"pretrained {name} needs ImageNet weights from the internet; use efficientnet_lite0 "
                "(weights ship with the install) or load your own weights file"
            )
        net = cls(input_shape=shape, include_top=False, weights=None)
        return net, layers.Identity(name="normalise")
    raise InputError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")


@keras.saving.register_keras_serializable(package="geomtl")
class GeoMTLModel(keras.Model):
    """Images (uint8 or float 0-255, channels last) -> dict of logits keyed by task name.

    ``geo_heads`` and ``scene_heads`` map task names to class counts. With
    ``loss_weighting="learned"`` each task i has a trainable log-variance s_i and the loss is
    sum_i exp(-s_i) L_i + s_i (Kendall et al. 2018); with ``"fixed"`` it is sum_i w_i L_i.
    """

    def __init__(
        self,
        geo_heads: dict[str, int],
        scene_heads: dict[str, int] | None = None,
        backbone: str = "small_cnn",
        input_size: int = 64,
        width: float = 1.0,
        pretrained: bool = False,
        freeze_backbone: bool = False,
        neck_units: int = 256,
        dropout: float = 0.2,
        loss_weighting: str = "fixed",
        task_weights: dict[str, float] | None = None,
        neck_norm: str = "batch",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not geo_heads:
            raise InputError("at least one geolocation head is required, received: geo_heads={}")
        if neck_norm not in ("batch", "layer"):
            raise InputError(f"neck_norm must be 'batch' or 'layer', received: {neck_norm!r}")
        if loss_weighting not in ("fixed", "learned"):
            raise InputError(f"loss_weighting must be 'fixed' or 'learned', received: {loss_weighting!r}")
        self.geo_heads = dict(geo_heads)
        self.scene_heads = dict(scene_heads or {})
        self.backbone_name = backbone
        self.input_size = input_size
        self.width = width
        self.pretrained = pretrained
        self.freeze_backbone = freeze_backbone
        self.neck_units = neck_units
        self.dropout_rate = dropout
        self.loss_weighting = loss_weighting
        self.task_weights = {t: float((task_weights or {}).get(t, 1.0)) for t in self.task_names}
        self.backbone, self.normalise = build_backbone(backbone, input_size, width, pretrained)
        self.backbone.trainable = not freeze_backbone
        self.pool = layers.GlobalAveragePooling2D(name="pool")
        self.neck = layers.Dense(neck_units, use_bias=False, name="neck")
        self.neck_norm = neck_norm
        self.neck_bn = (layers.BatchNormalization(momentum=0.9, name="neck_bn") if neck_norm == "batch"
                        else layers.LayerNormalization(name="neck_bn"))
        self.neck_act = layers.ReLU(name="neck_relu")
        self.drop = layers.Dropout(dropout, name="dropout")
        self.heads = {t: layers.Dense(n, name=f"head_{t}") for t, n in {**self.geo_heads, **self.scene_heads}.items()}
        self.log_vars = None
        if loss_weighting == "learned":
            self.log_vars = self.add_weight(shape=(len(self.task_names),), initializer="zeros", name="log_vars")
        self.task_loss_trackers = {t: keras.metrics.Mean(name=f"{t}_loss") for t in self.task_names}

    @property
    def task_names(self) -> list[str]:
        return list(self.geo_heads) + list(self.scene_heads)

    def backbone_features(self, images):
        """Pooled backbone features in inference mode (what the feature cache stores)."""
        x = self.normalise(ops.cast(images, "float32"))
        return x if self.backbone_name == "features" else self.pool(self.backbone(x, training=False))

    def features(self, images, training=False):
        """Neck embedding of a batch (before the heads)."""
        x = self.normalise(ops.cast(images, "float32"))
        if self.backbone_name != "features":
            x = self.pool(self.backbone(x, training=training and not self.freeze_backbone))
        x = self.neck_act(self.neck_bn(self.neck(x), training=training))
        return self.drop(x, training=training)

    def call(self, images, training=False):
        f = self.features(images, training=training)
        return {t: self.heads[t](f) for t in self.task_names}

    def heads_from_features(self, pooled):
        """Logits from pooled backbone features (inference), e.g. from the feature cache."""
        x = self.neck_act(self.neck_bn(self.neck(ops.cast(pooled, "float32")), training=False))
        return {t: self.heads[t](x) for t in self.task_names}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Weighted sum of the per-task sparse cross-entropies (tasks absent from ``y`` are skipped;
        ``sample_weight`` weights images within each task; labels < 0 are masked out of their task)."""
        total = 0.0
        for k, task in enumerate(self.task_names):
            if task not in y:
                continue
            target = ops.cast(y[task], "int32")
            labelled = target >= 0  # -1: an evaluation image outside every cell of this partitioning
            if sample_weight is None and bool(ops.all(labelled)):
                ce = ops.mean(keras.losses.sparse_categorical_crossentropy(target, y_pred[task], from_logits=True))
            else:  # weight 0 = unlabelled for this head, or an unreadable image's placeholder
                ce = keras.losses.sparse_categorical_crossentropy(ops.maximum(target, 0), y_pred[task],
                                                                  from_logits=True)
                w = ops.cast(labelled, ce.dtype)
                if sample_weight is not None:
                    w = w * ops.cast(ops.reshape(sample_weight, (-1,)), ce.dtype)
                ce = ops.sum(ce * w) / ops.maximum(ops.sum(w), 1.0)
            self.task_loss_trackers[task].update_state(ce)
            if self.log_vars is not None:
                total = total + ops.exp(-self.log_vars[k]) * ce + self.log_vars[k]
            else:
                total = total + self.task_weights[task] * ce
        return total

    def train_step(self, data):
        """Keras' step, plus one gradient all-reduce across processes when training data-parallel."""
        from geomtl_core.distributed import average_gradients, is_distributed

        if not is_distributed():
            return super().train_step(data)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_pred = self(x, training=True)
        self.zero_grad()
        loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
        self._loss_tracker.update_state(loss, sample_weight=ops.shape(x)[0])
        loss.backward()
        weights = self.trainable_weights[:]
        grads = [v.value.grad for v in weights]
        average_gradients(grads)
        import torch

        with torch.no_grad():
            self.optimizer.apply(grads, weights)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def get_config(self):
        return {
            **super().get_config(),
            "geo_heads": self.geo_heads,
            "scene_heads": self.scene_heads,
            "backbone": self.backbone_name,
            "input_size": self.input_size,
            "width": self.width,
            "pretrained": False,  # weights come from the saved file, never from a download
            "freeze_backbone": self.freeze_backbone,
            "neck_units": self.neck_units,
            "dropout": self.dropout_rate,
            "loss_weighting": self.loss_weighting,
            "task_weights": self.task_weights,
            "neck_norm": self.neck_norm,
        }


@keras.saving.register_keras_serializable(package="geomtl")
class MaskedAccuracy(keras.metrics.Mean):
    """Top-1 accuracy over labelled samples only: a label < 0 (an evaluation image outside every cell of a
    partitioning) is ignored, never counted as some class."""

    def __init__(self, name: str = "acc", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        hit = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true), "float32")
        w = ops.cast(y_true >= 0, "float32")
        if sample_weight is not None:
            w = w * ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
        return super().update_state(hit, sample_weight=w)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


def compile_model(model: GeoMTLModel, optimizer: keras.optimizers.Optimizer) -> GeoMTLModel:
    """Compile with top-1 accuracy per task over labelled samples (the loss comes from ``compute_loss``)."""
    model.compile(optimizer=optimizer, metrics={t: [MaskedAccuracy(name="acc")] for t in model.task_names})
    return model
