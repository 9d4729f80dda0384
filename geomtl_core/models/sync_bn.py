"""Synchronised BatchNorm for data-parallel training: batch statistics over the global batch of all processes.

With ``torchrun``, each process sees only its share of every global batch; plain BatchNorm would normalise
(and update its moving statistics) with per-process statistics. :class:`SyncBatchNormalization` all-reduces
the per-channel mean and mean of squares instead, differentiably (as torch's ``SyncBatchNorm``), so one step of
W processes on batches of N equals one process on a batch of W*N. Outside a process group it is exactly Keras'
``BatchNormalization``.
"""

from __future__ import annotations

from geomtl_core.distributed import is_distributed

import keras
import torch

__all__ = ["SyncBatchNormalization", "set_sync_batchnorm", "sync_batchnorm_enabled"]

_SYNC = {"enabled": True}


def set_sync_batchnorm(enabled: bool) -> None:
    """Switch synchronisation on or off for every :class:`SyncBatchNormalization` (``model.sync_bn``)."""
    _SYNC["enabled"] = bool(enabled)


def sync_batchnorm_enabled() -> bool:
    """True when SyncBatchNormalization layers all-reduce their batch statistics (distributed and enabled)."""
    return _SYNC["enabled"] and is_distributed()


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes whose backward sums the gradients too: every process's loss depends on every input."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        torch.distributed.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        g = grad.clone()
        torch.distributed.all_reduce(g)
        return g


def _global_moments(x: torch.Tensor, axes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and biased variance over ``axes`` and over all processes, differentiable (any local batch sizes)."""
    total = torch.sum(x, dim=axes)
    sq = torch.sum(torch.square(x), dim=axes)
    count = torch.full((1,), x.numel() / total.numel(), dtype=x.dtype, device=x.device)
    both = _AllReduceSum.apply(torch.cat([total, sq, count]))
    c = total.numel()
    mean = both[:c] / both[-1]
    return mean, both[c : 2 * c] / both[-1] - torch.square(mean)  # E[x^2] - E[x]^2, as Keras' torch moments


@keras.saving.register_keras_serializable(package="geomtl")
class SyncBatchNormalization(keras.layers.BatchNormalization):
    """Keras BatchNormalization whose training-mode batch statistics span all data-parallel processes."""

    def _moments(self, inputs, mask):
        x = inputs
        if mask is not None or not sync_batchnorm_enabled() or not isinstance(x, torch.Tensor) or x.is_meta:
            return super()._moments(inputs, mask)
        return _global_moments(x, list(self._reduction_axes))
