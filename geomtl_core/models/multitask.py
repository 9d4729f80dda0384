"""The multi-task network: backbone -> shared neck -> one softmax head per partitioning and per
scene level, with fixed or learned (homoscedastic uncertainty) loss weights. Keras 3, torch backend.

Its parts live beside it: backbones in ``backbones``, the loss in ``losses``, the train steps other than
Keras' own in ``train_steps``, the metric in ``metrics``; ``fast_path`` decides whether the speed layers and
the lean step run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from geomtl_core.errors import InputError
from geomtl_core.models.backbones import BACKBONES, SmallCNN, build_backbone
from geomtl_core.models.fast_layers import layer_set
from geomtl_core.models.fast_path import fast_path_now
from geomtl_core.models.losses import multitask_loss
from geomtl_core.models.metrics import MaskedAccuracy
from geomtl_core.models.seeds import kernel_init
from geomtl_core.models.train_steps import keras_distributed_step, lean_applies, lean_train_step, plain_set, track

if TYPE_CHECKING:
    from geomtl_core.config import ExperimentConfig

import keras  # the backend was chosen by importing geomtl_core (its __init__)
from keras import layers, ops

__all__ = ["BACKBONES", "GeoMTLModel", "MaskedAccuracy", "SmallCNN", "build_backbone", "compile_model"]


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
        finetune_blocks: int = 0,
        inputs: str = "images",
        label_smoothing: float = 0.0,
        conv_padding: str = "same",
        seed: int | None = None,
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
        if inputs not in ("images", "activations"):
            raise InputError(f"inputs must be 'images' or 'activations', received: {inputs!r}")
        if not 0 <= label_smoothing < 1:
            raise InputError(f"label_smoothing must be in [0, 1), received: {label_smoothing}")
        self.finetune_blocks, self.inputs, self.label_smoothing = int(finetune_blocks), inputs, float(label_smoothing)
        if conv_padding not in ("same", "same_symmetric"):
            raise InputError(f"conv_padding must be 'same' or 'same_symmetric', received: {conv_padding!r}")
        self.conv_padding = conv_padding
        # the speed layers and the lean train step, only where measured and tested (CPU, float32, Keras 3.15)
        plain_set(self, _fast_path=fast_path_now(self.dtype_policy.name))
        fl = layer_set(self.fast_path.enabled)
        self.seed = seed  # every layer's initialisation from it (``models.seeds``); None: Keras draws seeds
        net, norm = build_backbone(backbone, input_size, width, pretrained, conv_padding, fast=self.fast_path.enabled,
                                   seed=seed)
        net.trainable = not freeze_backbone
        self.tuned_from = None  # the first tuned layer when only the last blocks train
        if self.finetune_blocks:
            from geomtl_core.models.finetune import freeze_below, tail_model, tuned_from

            self.tuned_from = tuned_from(backbone, net, self.finetune_blocks)
            if inputs == "activations":  # trains on cached activations below the tuned blocks
                net = tail_model(net, self.tuned_from)
            else:
                freeze_below(net, self.tuned_from)
        elif inputs == "activations":
            raise InputError("inputs='activations' needs finetune_blocks > 0")
        self.backbone = net  # assigned once: Keras tracks every layer ever assigned to an attribute
        self.normalise = norm if inputs == "images" else layers.Identity(name="normalise")  # activations: done
        self.pool = fl.GlobalAveragePooling2D(name="pool")
        self.neck_norm = neck_norm
        if neck_units < 0:
            raise InputError(f"neck_units must be >= 0 (0: no neck), received: neck_units={neck_units}")
        if neck_units:
            self.neck = fl.Dense(neck_units, use_bias=False, kernel_initializer=kernel_init(seed, "neck"), name="neck")
            self.neck_bn = (fl.BatchNormalization(momentum=0.9, name="neck_bn") if neck_norm == "batch"
                            else layers.LayerNormalization(name="neck_bn"))
            self.neck_act = fl.ReLU(name="neck_relu")
        else:  # GeoEstimation: pooled backbone features go straight to the heads
            self.neck = layers.Identity(name="neck")
            self.neck_bn = layers.Identity(name="neck_bn")
            self.neck_act = layers.Identity(name="neck_relu")
        # unseeded on purpose: Keras' torch backend then draws masks from torch's generator, which the trainer
        # reseeds every epoch (exact resume); a seeded Dropout keeps a state of its own and is slower
        self.drop = fl.Dropout(dropout, name="dropout")
        # seeded by name: a geo head starts the same with or without scene heads beside it (paired arms)
        self.heads = {t: fl.Dense(n, kernel_initializer=kernel_init(seed, f"head_{t}"), name=f"head_{t}")
                      for t, n in {**self.geo_heads, **self.scene_heads}.items()}
        self.log_vars = None
        if loss_weighting == "learned":
            self.log_vars = self.add_weight(shape=(len(self.task_names),), initializer="zeros", name="log_vars")
        self.task_loss_trackers = {t: keras.metrics.Mean(name=f"{t}_loss") for t in self.task_names}

    @property
    def fast_path(self):
        """``fast_path.FastPath``: whether this model runs the speed layers and lean train step, and why."""
        return self._fast_path

    @property
    def task_names(self) -> list[str]:
        return list(self.geo_heads) + list(self.scene_heads)

    def backbone_features(self, images):
        """What the feature cache stores, in inference mode: pooled backbone features, or with
        ``finetune_blocks`` the flattened activations entering the first tuned block."""
        x = self._normalised(images)
        if self.backbone_name == "features":
            return x
        if self.finetune_blocks:
            from geomtl_core.models.finetune import frozen_activations

            return frozen_activations(self.backbone, self.tuned_from, x)
        return self.pool(self.backbone(x, training=False))

    def _normalised(self, images):
        """The backbone's input normalisation of a batch, in float32 (uint8 torch batches skip the cast pass)."""
        from_uint8 = getattr(self.normalise, "from_uint8", None)  # fast_layers.Rescaling
        fused = from_uint8(images) if from_uint8 is not None else None
        return fused if fused is not None else self.normalise(ops.cast(images, "float32"))

    def _from_cache(self, cached, training=False):
        """Pooled features from what the cache stores (the tuned blocks run here when there are some)."""
        x = ops.cast(cached, "float32")
        if self.finetune_blocks:
            from geomtl_core.models.finetune import run_tail

            x = self.pool(run_tail(self.backbone, self.tuned_from, x, training=training))
        return x

    def features(self, images, training=False):
        """Neck embedding of a batch (before the heads)."""
        if self.inputs == "activations":
            x = self._from_cache(images, training=training)
        else:
            x = self._normalised(images)
            if self.backbone_name != "features":
                x = self.pool(self.backbone(x, training=training and not self.freeze_backbone))
        x = self.neck_act(self.neck_bn(self.neck(x), training=training))
        return self.drop(x, training=training)

    def call(self, images, training=False):
        f = self.features(images, training=training)  # logits in float32 also under a mixed-precision policy
        return {t: ops.cast(self.heads[t](f), "float32") for t in self.task_names}

    def heads_from_features(self, pooled):
        """Logits from pooled backbone features (inference), e.g. from the feature cache."""
        x = self.neck_act(self.neck_embedding(pooled))
        return {t: ops.cast(self.heads[t](x), "float32") for t in self.task_names}

    def backbone_embedding(self, cached):
        """Pooled backbone features from what the feature cache stores (inference): the cache itself for a frozen
        backbone; with tuned blocks, their output on the cached activations (retrieval's ``backbone``)."""
        return self._from_cache(cached, training=False)

    def neck_embedding(self, pooled):
        """The trained neck's normalised output before its ReLU, from pooled backbone features (inference): the
        features the geolocation and scene losses shaped, signed and never all zero (retrieval's ``neck``)."""
        return self.neck_bn(self.neck(self._from_cache(pooled)), training=False)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Weighted sum of the per-task sparse cross-entropies (tasks absent from ``y`` are skipped;
        ``sample_weight`` weights images within each task; labels < 0 are masked out of their task);
        see ``losses.multitask_loss``."""
        return multitask_loss(self.task_names, y, y_pred, task_weights=self.task_weights, log_vars=self.log_vars,
                              label_smoothing=self.label_smoothing,
                              sample_weight=sample_weight, training=training, track=self._track_task)

    def _track_task(self, task, value):
        track(self, self.task_loss_trackers[task], value)

    #: the lean train step (see ``train_step``); False: Keras' standard step (for comparisons)
    lean_train_step: bool = True
    #: the lean step builds the logs dict on the first step after a metrics reset and every this many steps
    log_every: int = 10

    def reset_metrics(self):
        super().reset_metrics()
        plain_set(self, _lean_steps=0, _lean_logs=None)

    def train_step(self, data):
        """One optimisation step, with one gradient all-reduce across processes when training data-parallel.

        Where the fast path applies (``self.fast_path``: CPU, float32, the tested Keras) the lean step of
        ``train_steps`` does what Keras' step does with less overhead; elsewhere (mixed precision, a GPU,
        another Keras) Keras' own ``train_step`` runs (with the all-reduce added when distributed).
        """
        from geomtl_core.distributed import is_distributed

        if not lean_applies(self):
            if not is_distributed():
                return super().train_step(data)
            return keras_distributed_step(self, data)
        return lean_train_step(self, data, standard_loss=type(self).compute_loss is GeoMTLModel.compute_loss)

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
            "finetune_blocks": self.finetune_blocks,
            "inputs": self.inputs,
            "label_smoothing": self.label_smoothing,
            "conv_padding": self.conv_padding,
            "seed": self.seed,
        }



def compile_model(model: GeoMTLModel, optimizer: keras.optimizers.Optimizer) -> GeoMTLModel:
    """Compile with top-1 accuracy per task over labelled samples (the loss comes from ``compute_loss``)."""
    accuracies = {t: MaskedAccuracy(name="acc") for t in model.task_names}
    model.compile(optimizer=optimizer, metrics={t: [m] for t, m in accuracies.items()})
    # the lean train step updates these in place (ids: an attribute holding the metrics would track them twice)
    model._masked_accuracy_ids = {t: id(m) for t, m in accuracies.items()}
    return model


def build_model(cfg: ExperimentConfig, parts: list, scene: dict[str, int], cached_inputs: bool = False) -> GeoMTLModel:
    """The image model of a config with these partitionings and scene tasks, or (``cached_inputs``) its twin that
    trains on cached features or activations; unbuilt (its weights drawn from ``cfg.train.seed`` once called)."""
    m = cfg.model
    backbone, inputs = m.backbone, "images"
    if cached_inputs:
        backbone, inputs = ("features", "images") if not m.finetune_blocks else (m.backbone, "activations")
    return GeoMTLModel(
        {p.name: len(p) for p in parts}, scene, backbone=backbone, input_size=cfg.data.image_size,
        width=m.width, pretrained=m.pretrained, freeze_backbone=m.freeze_backbone, neck_units=m.neck_units,
        neck_norm=m.neck_norm, dropout=m.dropout, loss_weighting=m.loss_weighting,
        task_weights={s: m.scene_weight for s in scene}, finetune_blocks=m.finetune_blocks if backbone != "features"
        else 0, inputs=inputs, label_smoothing=cfg.train.label_smoothing, conv_padding=m.conv_padding,
        seed=cfg.train.seed,
    )
