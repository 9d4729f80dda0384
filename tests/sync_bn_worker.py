"""One step of a tiny conv + BatchNorm model, alone on a batch or as one of 2 gloo processes (test_sync_bn.py)."""

from __future__ import annotations

import sys

import geomtl_core  # noqa: F401 - selects the torch backend
from geomtl_core.distributed import average_gradients
from geomtl_core.models.sync_bn import SyncBatchNormalization

import keras
import numpy as np
import torch

N = 4  # images per process; the single-process reference takes 2 * N


def batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.normal(1.0, 2.0, (2 * N, 6, 6, 3)).astype("float32"), rng.normal(size=(2 * N, 3)).astype("float32")


def step(bn: str, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Output, averaged gradients and updated moving statistics after one training step."""
    keras.utils.set_random_seed(0)
    norm = SyncBatchNormalization if bn == "sync" else keras.layers.BatchNormalization
    inputs = keras.Input((6, 6, 3))
    h = keras.layers.Conv2D(5, 3, use_bias=False, name="conv")(inputs)
    h = norm(momentum=0.9, name="bn")(h)
    h = keras.layers.ReLU()(h)
    out = keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inputs, out)
    pred = model(torch.from_numpy(x), training=True)
    loss = torch.mean(torch.square(pred - torch.from_numpy(y)))
    loss.backward()
    grads = [v.value.grad for v in model.trainable_weights]
    average_gradients(grads)
    bn_layer = model.get_layer("bn")
    res = {"pred": pred.detach().numpy(), "moving_mean": keras.ops.convert_to_numpy(bn_layer.moving_mean),
           "moving_variance": keras.ops.convert_to_numpy(bn_layer.moving_variance)}
    res |= {f"grad_{v.path}": g.numpy() for v, g in zip(model.trainable_weights, grads, strict=True)}
    return res


def main(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    x, y = batch()
    share = slice(rank * N, (rank + 1) * N)
    for bn in ("sync", "plain"):
        np.savez(f"{out}/{bn}_rank{rank}.npz", **step(bn, x[share], y[share]))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
