"""Drop-in Keras layers that run as single PyTorch kernels on the torch backend (issue #15).

Keras' torch backend computes a BatchNormalization as ~10 small ops each way, transposes NHWC inputs to a
contiguous NCHW copy (and back) around every convolution, and pads "same" convolutions at stride 2 with an
explicit copy. These subclasses keep the stock layers' variables, shapes, config and ``.keras`` saving
(so weights move freely between them and the stock layers) and only replace ``call``:

* ``FusedBatchNormalization``: one ``torch.nn.functional.batch_norm`` call; in training it updates the
  moving statistics exactly as Keras does (``moving = m * moving + (1 - m) * batch``, biased batch variance).
* ``FastDense``: one ``torch.addmm`` instead of a matmul and an add.
* ``FastConv2D`` / ``FastDepthwiseConv2D``: ``torch.nn.functional.conv2d`` on an NCHW *view* of the NHWC
  input (``channels_last`` memory, no permute copy); the kernel stays in Keras' HWIO layout.
  ``padding="same_symmetric"`` pads ``(k - 1) // 2`` on every side (what torch's ``padding=k // 2`` does):
  the same output shape as ``"same"`` with no pad copy, but at stride 2 on even sizes the window is shifted
  by one pixel with respect to Keras/TensorFlow ``"same"`` (pad 0 before, 1 after), so it is a different
  network: use it for new models only. ``padding="same"`` stays exactly Keras' (a pad copy when asymmetric).

The classes carry the stock classes' names on purpose: Keras names the entries of a ``.keras`` weights
file after the class names of the layers in a list (``conv2d_1``, ``batch_normalization_3``, ...), so models
built from them read and write the same weight files as before. They are registered (and saved in model
configs) as ``geomtl>FastConv2D``, ``geomtl>FastDepthwiseConv2D``, ``geomtl>FastDense`` and
``geomtl>FusedBatchNormalization``;
``FastConv2D`` etc. are aliases.

* ``ReLU``, ``Dropout``, ``GlobalAveragePooling2D``, ``Rescaling``, ``Identity``: the stock layers; like the ones above
  they skip ``Layer.__call__``'s per-call overhead on eager float32 calls (see ``_LeanCall``).

The fast path runs only where ``fast_path.fast_path_enabled`` allows it (the torch backend on a CPU, float32,
the tested Keras version); anything else it does not cover (a GPU, mixed precision, another Keras version,
masks, renorm, symbolic or stateless tracing, ...) falls back to the stock Keras ``call`` through
``Layer.__call__``. Model builders take the stock Keras classes themselves where the fast path is off
(``layer_set``).
"""

from __future__ import annotations

from types import SimpleNamespace

from geomtl_core.models.fast_path import fast_path_now, keras_internals

import keras
from keras import backend

__all__ = [
    "BatchNormalization",
    "Conv2D",
    "Dense",
    "DepthwiseConv2D",
    "Dropout",
    "FastConv2D",
    "FastDense",
    "FastDepthwiseConv2D",
    "FusedBatchNormalization",
    "GlobalAveragePooling2D",
    "Identity",
    "ReLU",
    "Rescaling",
    "layer_set",
    "same_pads",
]


def _torch():
    import torch

    return torch


def same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """Keras/TensorFlow "same" padding (before, after) of one spatial dimension."""
    eff = (kernel - 1) * dilation + 1
    total = max((-(-size // stride) - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def _fast_ok(layer, x) -> bool:
    """True when the eager torch fast path applies to this call: the process may take it (``_SCOPES``), and a
    float32 layer gets a float32 CPU tensor (so its variables are float32 CPU tensors, whose ``._value`` the
    fast paths then read directly)."""
    if _SCOPES is None:
        return False
    torch, in_stateless_scope, in_symbolic_scope = _SCOPES
    return (isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.is_cpu and layer.compute_dtype == "float32"
            and not in_stateless_scope() and not in_symbolic_scope())


def _plain_kernel(layer) -> bool:
    """No LoRA, no quantization: ``layer.kernel`` is the kernel variable itself."""
    return not getattr(layer, "lora_enabled", False) and getattr(layer, "quantization_mode", None) is None


def _scopes():
    """``(torch, in_stateless_scope, in_symbolic_scope)`` where this process may take the fast path at all
    (``fast_path.fast_path_enabled``: torch backend on a CPU, the tested Keras version, its internals
    importable), else None: every layer here is then its stock Keras class in behaviour, through
    ``Layer.__call__``. The dtype is checked per layer and call (``_fast_ok``)."""
    found = keras_internals()
    if found is None or not fast_path_now("float32"):
        return None
    import torch

    return torch, found[0], found[1]


_SCOPES = _scopes()


class _LeanCall:
    """Skips Keras' ``Layer.__call__`` machinery (~0.1 ms a call on a CPU: spec checks, scopes, masks, torch
    hooks) for an eager float32 call of a built layer with one tensor and, where ``call`` takes it, an explicit
    ``training``; anything else goes through ``Layer.__call__``."""

    _lean_ignores_training = False  # True where ``call`` takes ``training`` but does not use it

    def __call__(self, *args, **kwargs):
        if (self.built and len(args) == 1 and _fast_ok(self, args[0]) and set(kwargs) <= {"training"}
                and getattr(args[0], "_keras_mask", None) is None and self.activity_regularizer is None):
            if not self._call_has_training_arg or self._lean_ignores_training:
                return self.call(args[0])
            if "training" in kwargs:
                return self.call(args[0], training=kwargs["training"])
        return super().__call__(*args, **kwargs)


class _ConvMixin:
    """Shared "same_symmetric" handling and the torch call of the two convolution classes."""

    def _init_padding(self, padding: str) -> str:
        self.symmetric_padding = padding == "same_symmetric"
        return "same" if self.symmetric_padding else padding

    def _check_symmetric(self) -> None:
        if self.symmetric_padding and any(k % 2 == 0 for k in self.kernel_size):
            raise ValueError(f"padding='same_symmetric' needs odd kernel sizes, received: {self.kernel_size}")

    def _torch_conv(self, x, weight, groups: int):
        torch = _torch()
        tnn = torch.nn.functional
        last = self.data_format == "channels_last"
        if last:
            x = x.permute(0, 3, 1, 2)  # a view: NCHW shape, NHWC (channels_last) memory
        ks, st, dil = self.kernel_size, self.strides, self.dilation_rate
        if self.padding == "valid":
            pad = 0
        elif self.symmetric_padding:
            pad = tuple((k - 1) // 2 * d for k, d in zip(ks, dil, strict=True))
        else:
            pads = [same_pads(x.shape[2 + i], ks[i], st[i], dil[i]) for i in range(2)]
            if all(a == b for a, b in pads):
                pad = tuple(a for a, _ in pads)
            else:
                x = tnn.pad(x, (pads[1][0], pads[1][1], pads[0][0], pads[0][1]))
                pad = 0
        y = tnn.conv2d(x, weight, self.bias._value if self.use_bias else None, st, pad, dil, groups)
        if last:
            y = y.permute(0, 2, 3, 1)  # NHWC view of the channels_last result: no copy
        return y if self.activation is keras.activations.linear else self.activation(y)

    def _symbolic_call(self, inputs):
        """Shape tracing (same output shape as "same") or a non-float32 call: Keras ops, symmetric padding."""
        from keras import ops

        pads = [((k - 1) // 2 * d,) * 2 for k, d in zip(self.kernel_size, self.dilation_rate, strict=True)]
        pads = [(0, 0), *pads, (0, 0)] if self.data_format == "channels_last" else [(0, 0), (0, 0), *pads]
        y = self._keras_conv(ops.pad(inputs, pads))
        if self.use_bias:
            shape = (1, 1, 1, -1) if self.data_format == "channels_last" else (1, -1, 1, 1)
            y = y + ops.reshape(self.bias, shape)
        return self.activation(y)

    def _padding_config(self, config: dict) -> dict:
        if self.symmetric_padding:
            config["padding"] = "same_symmetric"
        return config


def _relayout(variable, order: tuple[int, ...]) -> None:
    """Store a torch-backend variable's elements in the memory order ``order`` (its dims, outermost first)
    while keeping its shape: the same values, read and assigned (``copy_``) as before, but the HWIO kernel's
    OIHW view is then channels_last, so torch's conv neither reorders the weight nor copies its gradient
    (the gradient takes the parameter's strides) every step."""
    if backend.backend() != "torch" or not hasattr(variable, "_value") or variable._value is None:
        return
    torch = _torch()
    t = variable._value
    inverse = tuple(order.index(d) for d in range(t.ndim))
    with torch.inference_mode(False), torch.no_grad():  # a first call under inference_mode must not leave an
        t.data = t.data.permute(*order).contiguous().permute(*inverse)  # inference tensor in a trainable weight


@keras.saving.register_keras_serializable(package="geomtl", name="FastConv2D")
class Conv2D(_LeanCall, _ConvMixin, keras.layers.Conv2D):
    """``keras.layers.Conv2D`` computed by one ``torch.nn.functional.conv2d`` on a channels_last view.

    Also accepts ``padding="same_symmetric"`` (see the module docstring). The kernel keeps Keras' HWIO shape,
    stored in OHWI memory order (see ``_relayout``)."""

    def __init__(self, *args, padding: str = "valid", **kwargs):
        super().__init__(*args, padding=self._init_padding(padding), **kwargs)
        self._check_symmetric()

    def _ohwi_kernel(self):
        """The kernel's torch tensor, moved to OHWI memory on first use (a variable built in a symbolic or
        deferred scope has no tensor until then)."""
        k = self.kernel._value
        if self.groups == 1 and k.stride()[2] != 1:
            _relayout(self.kernel, (3, 0, 1, 2))
        return k

    def call(self, inputs):
        if _fast_ok(self, inputs) and _plain_kernel(self):
            weight = self._ohwi_kernel().permute(3, 2, 0, 1)  # HWIO -> OIHW view, channels_last
            return self._torch_conv(inputs, weight, self.groups)
        return self._symbolic_call(inputs) if self.symmetric_padding else super().call(inputs)

    def _keras_conv(self, x):
        from keras import ops

        return ops.conv(x, self.kernel, self.strides, "valid", self.data_format, self.dilation_rate)

    def get_config(self):
        return self._padding_config(super().get_config())


@keras.saving.register_keras_serializable(package="geomtl", name="FastDepthwiseConv2D")
class DepthwiseConv2D(_LeanCall, _ConvMixin, keras.layers.DepthwiseConv2D):
    """``keras.layers.DepthwiseConv2D`` computed by one grouped ``conv2d`` on a channels_last view."""

    def __init__(self, *args, padding: str = "valid", **kwargs):
        super().__init__(*args, padding=self._init_padding(padding), **kwargs)
        self._check_symmetric()

    def call(self, inputs):
        if not (_fast_ok(self, inputs) and _plain_kernel(self)):
            return self._symbolic_call(inputs) if self.symmetric_padding else super().call(inputs)
        k = self.kernel._value  # (kh, kw, C, multiplier)
        kh, kw, c, mult = k.shape
        if k.stride()[1] != 1 and kh * kw > 1:  # store as (C, multiplier, kh, kw): a contiguous OIHW weight
            _relayout(self.kernel, (2, 3, 0, 1))
        w = k.reshape(kh, kw, 1, c * mult).permute(3, 2, 0, 1)  # (C * mult, 1, kh, kw)
        return self._torch_conv(inputs, w, c)

    def _keras_conv(self, x):
        from keras import ops

        return ops.depthwise_conv(x, self.kernel, self.strides, "valid", self.data_format, self.dilation_rate)

    def get_config(self):
        return self._padding_config(super().get_config())


@keras.saving.register_keras_serializable(package="geomtl", name="FusedBatchNormalization")
class BatchNormalization(_LeanCall, keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` computed by one ``torch.nn.functional.batch_norm`` call.

    Same variables, config and moving-statistics update as the stock layer (Keras momentum ``m``:
    ``moving = m * moving + (1 - m) * batch``, biased batch variance)."""

    def call(self, inputs, training=None, mask=None):
        if mask is not None or self.renorm or getattr(self, "synchronized", False) or not _fast_ok(self, inputs):
            return super().call(inputs, training=training, mask=mask)
        torch = _torch()
        x = inputs
        nd, axis = x.ndim, self.axis % inputs.ndim
        if axis != 1:  # move the channels to dim 1 as a view (NHWC -> NCHW with channels_last memory)
            x = x.permute(0, axis, *[d for d in range(1, nd) if d != axis])
        gamma = self.gamma._value if self.scale else None  # ._value: float32, outside any stateless scope
        beta = self.beta._value if self.center else None
        mean, var = self.moving_mean._value, self.moving_variance._value
        if training and self.trainable:
            n = x.numel() // x.shape[1]
            if n < 2:
                return super().call(inputs, training=training, mask=mask)
            # torch updates running_var with the unbiased variance, Keras with the biased one: scale the moving
            # variance by n/(n-1) before torch's in-place update and back after it. Through ``.data``: the
            # backward keeps the running tensors but, in training mode, never reads them, so no version bump.
            if x.shape[1] != var.shape[0]:  # Keras' own call raises its input-spec error
                return super().call(inputs, training=training, mask=mask)
            run_var = var.data
            run_var.mul_(n / (n - 1))
            try:
                y = torch.nn.functional.batch_norm(x, mean, var, gamma, beta, True, 1.0 - self.momentum,
                                                   self.epsilon)
            finally:  # scaled back whatever happens (an error in the call leaves the variance as it was)
                run_var.mul_((n - 1) / n)
        else:
            y = torch.nn.functional.batch_norm(x, mean, var, gamma, beta, False, 0.0, self.epsilon)
        if axis != 1:
            y = y.permute(0, *range(2, axis + 1), 1, *range(axis + 1, nd))
        return y


FastConv2D = Conv2D
FastDepthwiseConv2D = DepthwiseConv2D
FusedBatchNormalization = BatchNormalization


@keras.saving.register_keras_serializable(package="geomtl", name="FastDense")
class Dense(_LeanCall, keras.layers.Dense):
    """``keras.layers.Dense`` computed by one ``torch.addmm`` (matmul and bias in one op) for 2-D inputs."""

    _lean_ignores_training = True

    def call(self, inputs, training=None):
        if not (_fast_ok(self, inputs) and _plain_kernel(self)):
            return super().call(inputs, training=training)
        torch = _torch()
        kernel = self._kernel._value
        # addmm/mm against the (in, out) kernel as stored: its gradient comes out in the kernel's own layout
        # (F.linear on kernel.t() would hand autograd a transposed gradient to copy into place)
        if inputs.ndim == 2:
            y = torch.addmm(self.bias._value, inputs, kernel) if self.use_bias else torch.mm(inputs, kernel)
        else:
            y = torch.matmul(inputs, kernel)
            if self.use_bias:
                y = y + self.bias._value
        return y if self.activation is keras.activations.linear else self.activation(y)


FastDense = Dense


@keras.saving.register_keras_serializable(package="geomtl", name="LeanReLU")
class ReLU(_LeanCall, keras.layers.ReLU):
    """``keras.layers.ReLU`` without ``Layer.__call__``'s overhead on eager float32 calls (and as one torch op
    when plain or ReLU6, as Keras' own op is)."""

    def call(self, inputs):
        if self.negative_slope == 0 and self.threshold == 0 and self.max_value in (None, 6) and _fast_ok(self, inputs):
            tnn = _torch().nn.functional
            return tnn.relu(inputs) if self.max_value is None else tnn.relu6(inputs)
        return super().call(inputs)


@keras.saving.register_keras_serializable(package="geomtl", name="LeanDropout")
class Dropout(_LeanCall, keras.layers.Dropout):
    """``keras.layers.Dropout`` without ``Layer.__call__``'s overhead on eager float32 calls."""


@keras.saving.register_keras_serializable(package="geomtl", name="LeanGlobalAveragePooling2D")
class GlobalAveragePooling2D(_LeanCall, keras.layers.GlobalAveragePooling2D):
    """``keras.layers.GlobalAveragePooling2D`` without ``Layer.__call__``'s overhead on eager float32 calls."""

    def call(self, inputs):
        if not _fast_ok(self, inputs):
            return super().call(inputs)
        return inputs.mean(dim=(1, 2) if self.data_format == "channels_last" else (2, 3), keepdim=self.keepdims)


@keras.saving.register_keras_serializable(package="geomtl", name="LeanRescaling")
class Rescaling(_LeanCall, keras.layers.Rescaling):
    """``keras.layers.Rescaling`` without ``Layer.__call__``'s overhead on eager float32 calls."""

    def call(self, inputs):
        if self._scalar() and _fast_ok(self, inputs):
            return self._rescale(inputs)
        return super().call(inputs)

    def _scalar(self) -> bool:
        return isinstance(self.scale, float | int) and isinstance(self.offset, float | int)

    def _rescale(self, x, fresh: bool = False):
        """x * scale + offset; the offset added in place on the product (one buffer, not two)."""
        x = x.mul_(float(self.scale)) if fresh else x * float(self.scale)
        return x.add_(float(self.offset)) if self.offset else x

    def from_uint8(self, images):
        """float32 ``call(cast(images))`` of a uint8 torch batch, computed in the one float buffer of the
        cast (the same operations, so the same values), or None where that does not apply. A second
        batch-sized buffer is not free: on a CPU, ``uint8 * float`` measured 1.9 ms against 45 us for the
        cast and an in-place multiply (64 images of 64 px; fresh pages of the second allocation)."""
        if (_SCOPES is None or not self.built or not self._scalar() or self.compute_dtype != "float32"
                or not isinstance(images, _SCOPES[0].Tensor) or images.dtype != _SCOPES[0].uint8 or not images.is_cpu
                or _SCOPES[1]() or _SCOPES[2]()):
            return None
        return self._rescale(images.to(_SCOPES[0].float32), fresh=True)


@keras.saving.register_keras_serializable(package="geomtl", name="LeanIdentity")
class Identity(_LeanCall, keras.layers.Identity):
    """``keras.layers.Identity`` without ``Layer.__call__``'s overhead on eager float32 calls."""


def _stock_conv2d(*args, padding: str = "valid", **kwargs):
    """``keras.layers.Conv2D``, or for ``padding="same_symmetric"`` (which Keras lacks) this module's
    ``Conv2D``, which with the fast path off computes it with Keras ops through ``Layer.__call__``."""
    cls = Conv2D if padding == "same_symmetric" else keras.layers.Conv2D
    return cls(*args, padding=padding, **kwargs)


def layer_set(fast: bool) -> SimpleNamespace:
    """The layer classes a model builder uses: this module's (``fast``) or the stock ``keras.layers`` ones
    (layer names and weight-file entries are the same either way)."""
    if fast:
        return SimpleNamespace(Conv2D=Conv2D, DepthwiseConv2D=DepthwiseConv2D, BatchNormalization=BatchNormalization,
                               Dense=Dense, ReLU=ReLU, Dropout=Dropout, GlobalAveragePooling2D=GlobalAveragePooling2D,
                               Rescaling=Rescaling, Identity=Identity)
    stock = keras.layers
    return SimpleNamespace(Conv2D=_stock_conv2d, DepthwiseConv2D=stock.DepthwiseConv2D,
                           BatchNormalization=stock.BatchNormalization, Dense=stock.Dense, ReLU=stock.ReLU,
                           Dropout=stock.Dropout, GlobalAveragePooling2D=stock.GlobalAveragePooling2D,
                           Rescaling=stock.Rescaling, Identity=stock.Identity)
