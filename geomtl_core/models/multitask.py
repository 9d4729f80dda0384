"""The multi-task network: backbone -> shared neck -> one softmax head per partitioning and per
scene level, with fixed or learned (homoscedastic uncertainty) loss weights. Keras 3, torch backend."""

from __future__ import annotations

import contextlib

from geomtl_core.errors import InputError
from geomtl_core.models import fast_layers as fl
from geomtl_core.models.fast_layers import FastConv2D, FastDense, FusedBatchNormalization

import keras  # the backend was chosen by importing geomtl_core (its __init__)
from keras import layers, ops

BACKBONES = ("small_cnn", "mobilenetv3small", "efficientnet_lite0", "efficientnetb0", "resnet50", "features")


@keras.saving.register_keras_serializable(package="geomtl")
class SmallCNN(keras.layers.Layer):
    """Four strided conv blocks (32·w … 256·w channels): the fast backbone for tests and ablations.

    ``padding="same"`` is Keras/TensorFlow "same" (what bundles saved before the option hold);
    ``"same_symmetric"`` pads 1 on every side like torch's ``padding=1``: no pad copy, a little faster to train,
    but a different network (the stride-2 windows sit one pixel earlier). Conv and BN run as single torch
    kernels (``fast_layers``); variables and layer names are the stock layers', so old bundles load."""

    def __init__(self, width: float = 1.0, padding: str = "same", **kwargs):
        super().__init__(**kwargs)
        if width <= 0:
            raise InputError(f"width must be > 0, received: width={width}")
        if padding not in ("same", "same_symmetric"):
            raise InputError(f"padding must be 'same' or 'same_symmetric', received: {padding!r}")
        self.width, self.padding = width, padding
        self.blocks = []
        for k, ch in enumerate((32, 64, 128, 256)):
            self.blocks += [
                FastConv2D(max(8, int(ch * width)), 3, strides=2, padding=padding, use_bias=False, name=f"conv{k}"),
                FusedBatchNormalization(momentum=0.9, name=f"bn{k}"),
                fl.ReLU(name=f"relu{k}"),
            ]

    def call(self, x, training=False):
        for layer in self.blocks:
            x = layer(x, training=training)
        return x

    def get_config(self):
        return {**super().get_config(), "width": self.width, "padding": self.padding}


def build_backbone(name: str, input_size: int, width: float = 1.0, pretrained: bool = False,
                   conv_padding: str = "same"):
    """A feature extractor (image float in [0, 255] -> feature map) and its input normaliser
    (``conv_padding``: small_cnn's, see ``SmallCNN``)."""
    shape = (input_size, input_size, 3)
    if name == "features":  # inputs are already pooled backbone features (see geomtl_core.data.features)
        return fl.Identity(name="backbone"), fl.Identity(name="normalise")
    if name == "small_cnn":
        return SmallCNN(width, conv_padding, name="backbone"), fl.Rescaling(1 / 255.0, name="normalise")
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
        return efficientnet_lite0(shape, pretrained=pretrained), norm
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


@contextlib.contextmanager
def _one_thread():
    """Run the per-step metric bookkeeping (a few reductions over (batch, classes) logits) on one CPU thread:
    waking torch's second OpenMP thread for each of them costs ~5x the reduction itself (measured: amax of
    256 x 677 logits 55 us on two threads, 11 us on one; switching costs ~0.2 us). The thread count is restored
    on exit, errors included; a thread that first uses torch inside the window would keep one thread."""
    import torch

    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _plain_set(obj, **attrs) -> None:
    """Set bookkeeping attributes without Keras/torch tracking (and its cost, and its built-layer lock)."""
    for k, v in attrs.items():
        object.__setattr__(obj, k, v)


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
        net, norm = build_backbone(backbone, input_size, width, pretrained, conv_padding)
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
            self.neck = FastDense(neck_units, use_bias=False, name="neck")
            self.neck_bn = (FusedBatchNormalization(momentum=0.9, name="neck_bn") if neck_norm == "batch"
                            else layers.LayerNormalization(name="neck_bn"))
            self.neck_act = fl.ReLU(name="neck_relu")
        else:  # GeoEstimation: pooled backbone features go straight to the heads
            self.neck = layers.Identity(name="neck")
            self.neck_bn = layers.Identity(name="neck_bn")
            self.neck_act = layers.Identity(name="neck_relu")
        self.drop = fl.Dropout(dropout, name="dropout")
        self.heads = {t: FastDense(n, name=f"head_{t}") for t, n in {**self.geo_heads, **self.scene_heads}.items()}
        self.log_vars = None
        if loss_weighting == "learned":
            self.log_vars = self.add_weight(shape=(len(self.task_names),), initializer="zeros", name="log_vars")
        self.task_loss_trackers = {t: keras.metrics.Mean(name=f"{t}_loss") for t in self.task_names}

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
        x = self.neck_act(self.neck_bn(self.neck(self._from_cache(pooled)), training=False))
        return {t: ops.cast(self.heads[t](x), "float32") for t in self.task_names}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Weighted sum of the per-task sparse cross-entropies (tasks absent from ``y`` are skipped;
        ``sample_weight`` weights images within each task; labels < 0 are masked out of their task)."""
        total = 0.0
        for k, task in enumerate(self.task_names):
            if task not in y:
                continue
            target = ops.cast(y[task], "int32")
            labelled = target >= 0  # -1: an image outside every cell of this partitioning, or without this label
            ce = keras.losses.sparse_categorical_crossentropy(ops.maximum(target, 0), y_pred[task], from_logits=True)
            if training and self.label_smoothing:  # (1 - e) * CE + e * CE against the uniform distribution
                logits = ops.cast(y_pred[task], "float32")
                uniform = ops.logsumexp(logits, axis=-1) - ops.mean(logits, axis=-1)
                ce = (1.0 - self.label_smoothing) * ce + self.label_smoothing * uniform
            if sample_weight is None and bool(ops.all(labelled)):
                ce = ops.mean(ce)
            else:  # weight 0 = unlabelled for this head, or an unreadable image's placeholder
                w = ops.cast(labelled, ce.dtype)
                if sample_weight is not None:
                    w = w * ops.cast(ops.reshape(sample_weight, (-1,)), ce.dtype)
                ce = ops.sum(ce * w) / ops.maximum(ops.sum(w), 1.0)
            self._track(self.task_loss_trackers[task], ce)
            if self.log_vars is not None:
                total = total + ops.exp(-self.log_vars[k]) * ce + self.log_vars[k]
            else:
                total = total + self.task_weights[task] * ce
        return total

    #: the lean train step (see ``train_step``); False: Keras' standard step (for comparisons)
    lean_train_step: bool = True
    #: the lean step builds the logs dict on the first step after a metrics reset and every this many steps
    log_every: int = 10

    def _track(self, tracker, value):
        """``tracker.update_state(value)`` for a scalar; in the lean step a direct in-place add."""
        if not getattr(self, "_lean_active", False):
            tracker.update_state(value)
            return
        import torch

        with torch.no_grad():
            tracker.total._value.add_(value.detach())
            tracker.count._value.add_(1.0)

    def _lean_applies(self) -> bool:
        if not self.lean_train_step or keras.backend.backend() != "torch" or self.optimizer is None:
            return False
        if self.dtype_policy.name != "float32" or isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            return False  # mixed precision: Keras' path (loss scaling, casts)
        return self._compile_metrics is None or self._compile_metrics.built

    def _fast_accuracies(self):
        """{task: MaskedAccuracy} when the compiled metrics are exactly ``compile_model``'s, else None."""
        cm = self._compile_metrics
        key = id(cm)
        if getattr(self, "_fast_acc_key", None) != key:
            ids = dict(getattr(self, "_masked_accuracy_ids", None) or {})
            flat = [m for ml in (cm._flat_metrics or []) if ml for m in ml.metrics] if cm is not None else []
            weighted = [m for ml in (getattr(cm, "_flat_weighted_metrics", None) or []) if ml for m in ml.metrics]
            by_id = {id(m): m for m in flat}
            ok = (cm is not None and not weighted and len(flat) == len(ids) and set(by_id) == set(ids.values())
                  and all(type(m) is MaskedAccuracy for m in flat))
            _plain_set(self, _fast_acc={t: by_id[i] for t, i in ids.items()} if ok else None, _fast_acc_key=key)
        return self._fast_acc

    def reset_metrics(self):
        super().reset_metrics()
        _plain_set(self, _lean_steps=0, _lean_logs=None)

    def train_step(self, data):
        """One optimisation step, with one gradient all-reduce across processes when training data-parallel.

        The lean path (float32, torch backend) does what Keras' step does with less overhead: metric
        variables are updated in place, and the logs dict (what callbacks and the progress bar see per batch)
        is rebuilt only on the first step after ``reset_metrics`` and every ``log_every`` steps; epoch logs
        are exact (Keras reads the metrics again at the end of an epoch, and ``train_on_batch`` resets them
        every call). Mixed precision takes Keras' own path.
        """
        from geomtl_core.distributed import average_gradients, is_distributed

        if not self._lean_applies():
            if not is_distributed():
                return super().train_step(data)
            return self._keras_distributed_step(data)
        import torch

        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        # a float32 model called on a tensor: Model.__call__ would only add its per-call overhead (the layers
        # below all receive ``training`` explicitly)
        y_pred = self.call(x, training=True) if isinstance(x, torch.Tensor) else self(x, training=True)
        weights = self.trainable_weights  # one walk of the layer tree per step (it costs ~40 us)
        for v in weights:  # Module.zero_grad(set_to_none=True); frozen variables never receive gradients
            v._value.grad = None
        tasks = [t for t in self.task_names if t in y]
        # the labels of all tasks as one (tasks, batch) tensor, shared by the loss and the accuracies
        target = torch.stack([torch.as_tensor(y[t]).reshape(-1).long() for t in tasks]) if tasks else None
        labelled = target >= 0 if tasks else None
        _plain_set(self, _lean_active=True)
        try:
            if (sample_weight is None and not getattr(self, "label_smoothing", 0.0) and tasks
                    and type(self).compute_loss is GeoMTLModel.compute_loss):
                loss = self._lean_loss(tasks, target, labelled, y_pred)
            else:
                loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
        finally:
            _plain_set(self, _lean_active=False)
        batch = next(i for i in keras.tree.flatten(x) if i is not None).shape[0]
        with torch.no_grad():
            self._loss_tracker.total._value.add_(loss.detach() * batch)
            self._loss_tracker.count._value.add_(float(batch))
        if weights:
            loss.backward()
            grads = [v._value.grad for v in weights]  # float32 (lean path): ``.value`` would only add a check
            average_gradients(grads)
            with torch.no_grad():
                self.optimizer.apply(grads, weights)
        accuracies = self._fast_accuracies()
        if accuracies is not None and tasks and all(t in accuracies for t in tasks):
            # MaskedAccuracy.update_state of every task (unweighted, as compiled metrics are), batched
            with torch.no_grad(), _one_thread():
                hits = _top1_hit_counts([y_pred[t] for t in tasks], target, labelled)
                torch._foreach_add_([accuracies[t].total._value for t in tasks], list(hits.unbind()))
                torch._foreach_add_([accuracies[t].count._value for t in tasks],
                                    list(labelled.sum(dim=1).float().unbind()))
        elif self._compile_metrics is not None:
            self._compile_metrics.update_state(y, y_pred, sample_weight=sample_weight)
        steps = getattr(self, "_lean_steps", 0)
        _plain_set(self, _lean_steps=steps + 1)
        if steps % self.log_every == 0 or getattr(self, "_lean_logs", None) is None:
            _plain_set(self, _lean_logs=self.get_metrics_result())
        return self._lean_logs

    def _lean_loss(self, tasks, target, labelled, y_pred):
        """``compute_loss`` without sample weights or label smoothing: the same operations in plain torch, and
        the per-task loss trackers updated together. ``target``/``labelled``: (len(tasks), batch) labels."""
        import torch

        tnn = torch.nn.functional
        log_vars = self.log_vars.value if self.log_vars is not None else None
        index = {t: k for k, t in enumerate(self.task_names)}
        everywhere = bool(labelled.all())
        total, tracked = 0.0, {}
        for i, task in enumerate(tasks):
            k = index[task]
            if everywhere or bool(labelled[i].all()):
                ce = tnn.cross_entropy(y_pred[task], target[i])  # the fused mean: ~0.1 ms less than none + mean
            else:
                ce = tnn.cross_entropy(y_pred[task], target[i].clamp_min(0), reduction="none")
                w = labelled[i].to(ce.dtype)
                ce = (ce * w).sum() / w.sum().clamp_min(1.0)
            tracked[task] = ce
            if log_vars is not None:
                total = total + torch.exp(-log_vars[k]) * ce + log_vars[k]
            else:
                weight = self.task_weights[task]
                total = total + (ce if weight == 1.0 else weight * ce)
        if tracked:
            with torch.no_grad():
                trackers = [self.task_loss_trackers[t] for t in tracked]
                torch._foreach_add_([m.total._value for m in trackers], [ce.detach() for ce in tracked.values()])
                torch._foreach_add_([m.count._value for m in trackers], 1.0)
        return total

    def _keras_distributed_step(self, data):
        """Keras' step with the gradient all-reduce (the fallback of the lean step when distributed)."""
        from geomtl_core.distributed import average_gradients

        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_pred = self(x, training=True)
        self.zero_grad()
        loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
        self._loss_tracker.update_state(loss, sample_weight=ops.shape(x)[0])
        if self.optimizer is not None:
            loss = self.optimizer.scale_loss(loss)
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
            "finetune_blocks": self.finetune_blocks,
            "inputs": self.inputs,
            "label_smoothing": self.label_smoothing,
            "conv_padding": self.conv_padding,
        }


def _top1_hit_counts(logits: list, target, labelled):
    """(tasks,) float: per task, how many labelled images have their label as top-1 class (MaskedAccuracy's
    count). ``target``/``labelled``: (tasks, batch) labels and label >= 0.

    The label's logit equal to the row maximum (``amax`` + ``gather``) costs a fifth of torch's CPU ``argmax``.
    The two differ only where the maximum is tied; float32 logits tie in practice only when a row is constant
    (a collapsed network, or zero features), and a batch with such a row takes ``argmax`` (first index wins)."""
    import torch

    top = torch.stack([x.amax(dim=-1) for x in logits])
    if bool((top == torch.stack([x.amin(dim=-1) for x in logits])).any()):
        hit = torch.stack([x.argmax(dim=-1) for x in logits]) == target
    else:
        index = target.clamp_min(0).unsqueeze(-1)
        hit = torch.stack([x.gather(1, index[i]).squeeze(1) for i, x in enumerate(logits)]) == top
    return (hit & labelled).sum(dim=1).float()


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
    accuracies = {t: MaskedAccuracy(name="acc") for t in model.task_names}
    model.compile(optimizer=optimizer, metrics={t: [m] for t, m in accuracies.items()})
    # the lean train step updates these in place (ids: an attribute holding the metrics would track them twice)
    model._masked_accuracy_ids = {t: id(m) for t, m in accuracies.items()}
    return model
