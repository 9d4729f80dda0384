"""What MP-16 costs: per-image decode + augment and train-step costs measured on this machine,
scaled to GPUs by published ResNet-50 training rates, for the book's MP-16 recipe.

Measured here: JPEG decode + RandomResizedCrop(224) + flip per image (1 process; the published
recipe has no colour jitter), the Keras ResNet-50 (as ``mp16_base_M.yml``: no neck, SGD) and
EfficientNet-Lite0 train step at 224 px on this CPU, and the average JPEG size of ~320 px photos.
Assumed (published, approximate): ResNet-50 training at 224 px with mixed
precision, ~1,300 images/s on one V100 and ~2,700 on one A100 (NVIDIA DeepLearningExamples);
8-GPU data parallel at 90% scaling efficiency.
"""

from __future__ import annotations

import sys
import time

import geomtl_core  # noqa: F401
from geomtl_core.data.images import TransformConfig, decode_image, to_tensor, train_transform
from geomtl_core.models.multitask import GeoMTLModel, compile_model
from geomtl_core.models.optimizers import SGD
from geomtl_core.training.malloc import keep_freed_memory

import numpy as np
import simplejpeg
import torch

MP16 = 4_723_695
EPOCHS = 15
GPU_RATES = {"V100 (AMP)": 1300.0, "A100 (AMP)": 2700.0}


def photos(n: int = 64) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):  # smooth random fields compress like photos better than white noise
        base = rng.normal(128, 50, (30, 40, 3))
        img = np.kron(base, np.ones((8, 8, 1))) + rng.normal(0, 12, (240, 320, 3))
        out.append(simplejpeg.encode_jpeg(np.clip(img, 0, 255).astype(np.uint8), quality=90))
    return out


def time_pipeline(jpegs: list[bytes]) -> float:
    tf = train_transform(TransformConfig(size=224, flip=True, jitter=0.0))
    t = time.perf_counter()
    for data in jpegs:
        tf(to_tensor(decode_image(data, min_side=256)))
    return (time.perf_counter() - t) / len(jpegs)


def time_train_step(backbone: str, steps: int = 3, batch: int = 16) -> float:
    model = GeoMTLModel({"coarse": 3298, "middle": 7202, "fine": 12893}, {"s3": 3}, backbone=backbone,
                        input_size=224, neck_units=0, dropout=0.0)
    compile_model(model, SGD(0.01, momentum=0.9))
    x = np.random.default_rng(0).integers(0, 255, (batch, 224, 224, 3)).astype("uint8")
    y = {t: np.zeros(batch, "int64") for t in model.task_names}
    model.train_on_batch(x, y)  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return (time.perf_counter() - t) / (steps * batch)


def main() -> int:
    torch.set_num_threads(2)
    keep_freed_memory()  # as training does
    jpegs = photos()
    kb = np.mean([len(j) for j in jpegs]) / 1024
    per_img = time_pipeline(jpegs)
    print(f"JPEG ~320x240 q90: {kb:.0f} KiB/image -> MP-16 shards ~{MP16 * kb / 1024**2:.0f} GiB")
    print(f"decode + RandomResizedCrop + flip to 224 px: {1000 * per_img:.2f} ms/image/core "
          f"({1 / per_img:.0f} images/s/core)")
    for bb in ("resnet50", "efficientnet_lite0"):
        s = time_train_step(bb)
        print(f"{bb} train step 224 px on this 2-core CPU: {1 / s:.1f} images/s -> one MP-16 epoch "
              f"{MP16 * s / 86400:.1f} days")
    steps = MP16 * EPOCHS
    print(f"\n15 epochs = {steps / 1e6:.1f} M image steps (ResNet-50, 224 px)")
    for name, rate in GPU_RATES.items():
        for gpus in (1, 8):
            r = rate * gpus * (0.9 if gpus > 1 else 1.0)
            cores = r * per_img
            print(f"  {gpus} x {name}: {steps / r / 3600:5.1f} h; the input pipeline needs ~{cores:.0f} CPU cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
