"""Data-parallel training on PyTorch's distributed engine (``torchrun``; NCCL on GPUs, gloo on CPUs).

Each process trains the same Keras model on its own share of every global batch; gradients are
averaged with one all-reduce per step (what DistributedDataParallel does), epoch metrics are
averaged across processes, and only rank 0 writes checkpoints, logs and the bundle.
"""

from __future__ import annotations

import os

import keras
import torch
import torch.distributed as dist


def init_from_env() -> bool:
    """Join the process group that ``torchrun`` describes (WORLD_SIZE > 1); True when distributed."""
    if dist.is_available() and dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def average_gradients(grads: list[torch.Tensor | None]) -> None:
    """In-place mean of the gradients over all processes, as one flat all-reduce."""
    if not is_distributed():
        return
    present = [g for g in grads if g is not None]
    if not present:
        return
    flat = torch.cat([g.reshape(-1) for g in present])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in present:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def broadcast_weights(model) -> None:
    """Start every process from rank 0's weights (and optimizer state, when built)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for v in model.variables:
            t = v.value
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                dist.broadcast(t, src=0)


class ReduceLogs(keras.callbacks.Callback):
    """Average the epoch's logged metrics over processes (equal per-process batches make this exact)."""

    def on_epoch_end(self, epoch, logs=None):
        if not is_distributed() or not logs:
            return
        keys = sorted(k for k, v in logs.items() if isinstance(v, int | float))
        t = torch.tensor([float(logs[k]) for k in keys], dtype=torch.float64)
        dist.all_reduce(t)
        t /= dist.get_world_size()
        for k, v in zip(keys, t.tolist(), strict=True):
            logs[k] = v
