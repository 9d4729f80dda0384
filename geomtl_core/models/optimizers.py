"""Keras optimizers whose torch-backend update runs as few fused PyTorch kernels as ``torch.optim`` (issue #15).

Keras' torch SGD passes the learning rate (a 0-d tensor) as ``alpha`` of ``torch._foreach_add_``, which then
multiplies every gradient into a temporary first (one extra kernel and copy per variable, ~0.25 ms a step for
the neck and heads). ``SGD`` here passes it as a Python float on CPU, so the update is three fused foreach
calls; the arithmetic, the variables and the saved state are Keras' own (``m = momentum * m - lr * g``,
``w += m``), so optimizer states and ``.keras`` bundles move freely between it and ``keras.optimizers.SGD``.
"""

from __future__ import annotations

import keras
from keras import backend

__all__ = ["SGD"]


@keras.saving.register_keras_serializable(package="geomtl")
class SGD(keras.optimizers.SGD):
    """``keras.optimizers.SGD`` with a fused, temporary-free update on the torch backend's CPU tensors.

    On an accelerator the learning rate stays a tensor (reading it as a Python float would synchronise every
    step), as in Keras' torch SGD; on other backends it is Keras' own update."""

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if backend.backend() != "torch" or not trainable_variables:
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        import torch

        values = [v._value for v in trainable_variables]  # the torch tensors (no autocast: float32)
        lr = float(learning_rate) if values[0].device.type == "cpu" else learning_rate
        with torch.no_grad():
            if self.momentum == 0:
                torch._foreach_add_(values, grads, alpha=-lr)
                return
            bufs = [self.momentums[self._get_variable_index(v)]._value for v in trainable_variables]
            torch._foreach_mul_(bufs, self.momentum)
            torch._foreach_add_(bufs, grads, alpha=-lr)
            if self.nesterov:  # w += momentum * m - lr * g, with m already updated
                torch._foreach_add_(values, grads, alpha=-lr)
                torch._foreach_add_(values, bufs, alpha=self.momentum)
            else:
                torch._foreach_add_(values, bufs)

