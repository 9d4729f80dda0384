"""CPU inference throughput of candidate backbones (feature maps only, batch 64, eval mode, no grad).

Compares the ported ImageNet EfficientNet-Lite0 (geomtl_core.models.effnet_lite) with Keras'
MobileNetV3Small(weights=None, include_top=False) at 64, 96 and 224 px, plus the torch reference
model (efficientnet_lite_pytorch, channels_last memory) to show Keras' overhead; prints params and images/s.
Best of several repeats per cell; on a shared CPU take the table as relative, not absolute.
Run: .venv/bin/python benchmarks/bench_backbones.py [--sizes 64 96 224] [--batch 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from geomtl_core.models.effnet_lite import efficientnet_lite0  # also selects Keras' torch backend

import numpy as np
import torch

if TYPE_CHECKING:
    import keras


def images_per_s(model: Callable[..., Any], size: int, batch: int, repeats: int) -> float:
    """Best-of-repeats forward throughput on one random batch (after one warm-up call)."""
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(batch, size, size, 3)).astype(np.float32))
    best = float("inf")
    with torch.no_grad():
        model(x, training=False)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x, training=False)
            best = min(best, time.perf_counter() - t0)
    return batch / best


class TorchReference(torch.nn.Module):
    """efficientnet_lite_pytorch's extract_features on NHWC input, run in channels_last memory format."""

    def __init__(self) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        self.net = EfficientNet.from_name("efficientnet-lite0", image_size=None).eval()

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        """NHWC -> features (NCHW logical shape, channels_last memory)."""
        return self.net.extract_features(x.permute(0, 3, 1, 2))

    def count_params(self) -> int:
        """Parameters without the classifier, BN statistics included (as Keras counts them)."""
        return sum(t.numel() for k, t in self.net.state_dict().items() if not k.startswith("_fc.") and t.ndim)


def main() -> None:
    """Time each backbone at each size and print a table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 224])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import keras

    builders: dict[str, Callable[[], keras.Model]] = {
        "efficientnet_lite0 (ImageNet)": lambda: efficientnet_lite0(pretrained=True),
        "MobileNetV3Small (weights=None)": lambda: keras.applications.MobileNetV3Small(
            input_shape=(None, None, 3), weights=None, include_top=False, include_preprocessing=False
        ),
        "efficientnet_lite0 torch reference": TorchReference,
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
    header = f"{'backbone':34s} {'params':>10s} " + " ".join(f"{f'{s}px img/s':>12s}" for s in args.sizes)
    print(header)
    print("-" * len(header))
    for name, build in builders.items():
        model = build()
        rates = [images_per_s(model, s, args.batch, args.repeats) for s in args.sizes]
        print(f"{name:34s} {model.count_params():>10,d} " + " ".join(f"{r:12.1f}" for r in rates), flush=True)


if __name__ == "__main__":
    main()
