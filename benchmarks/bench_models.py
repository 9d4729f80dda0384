"""Every backbone of the model builder: parameters, multiply-accumulates per image and inference
images/s; and the Keras train step against an equivalent plain-PyTorch loop (same architecture,
batch, input), median of many steps, printed as a ratio (goal >= 0.95).

Run: .venv/bin/python benchmarks/bench_models.py [--size 64] [--batch 64] [--steps 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import geomtl_core  # noqa: F401
from geomtl_core.models.multitask import GeoMTLModel, compile_model

import keras
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

HEADS = {"coarse": 142, "middle": 311, "fine": 677}
SCENE = {"s3": 3}


def macs_per_image(model, size: int) -> float:
    x = torch.zeros((1, size, size, 3), dtype=torch.uint8)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, training=False)
    return counter.get_total_flops() / 2


def inference_rate(model, size: int, batch: int, repeats: int = 5) -> float:
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (batch, size, size, 3)).astype(np.uint8))
    times = []
    with torch.no_grad():
        model(x, training=False)
        for _ in range(repeats):
            t = time.perf_counter()
            model(x, training=False)
            times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


class TorchSmallCNN(torch.nn.Module):
    """The same network as GeoMTLModel(backbone="small_cnn") in plain PyTorch (channels_last memory)."""

    def __init__(self, width: float = 1.0, neck: int = 256):
        super().__init__()
        layers, cin = [], 3
        for ch in (32, 64, 128, 256):
            c = max(8, int(ch * width))
            layers += [torch.nn.Conv2d(cin, c, 3, 2, 1, bias=False), torch.nn.BatchNorm2d(c, momentum=0.1),
                       torch.nn.ReLU()]
            cin = c
        self.backbone = torch.nn.Sequential(*layers)
        self.neck = torch.nn.Sequential(torch.nn.Linear(cin, neck, bias=False), torch.nn.BatchNorm1d(neck),
                                        torch.nn.ReLU(), torch.nn.Dropout(0.2))
        self.heads = torch.nn.ModuleDict({t: torch.nn.Linear(neck, n) for t, n in {**HEADS, **SCENE}.items()})

    def forward(self, x):
        x = x.permute(0, 3, 1, 2).float().div(255.0).contiguous(memory_format=torch.channels_last)
        f = self.neck(self.backbone(x).mean(dim=(2, 3)))
        return {t: h(f) for t, h in self.heads.items()}


def train_rates(size: int, batch: int, steps: int) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (batch, size, size, 3)).astype(np.uint8)
    y = {t: rng.integers(0, n, batch) for t, n in {**HEADS, **SCENE}.items()}
    km = GeoMTLModel(HEADS, SCENE, backbone="small_cnn", input_size=size)
    compile_model(km, keras.optimizers.SGD(0.01, momentum=0.9))
    xt, yt = torch.from_numpy(x), {t: torch.from_numpy(v) for t, v in y.items()}
    km.train_on_batch(xt, yt)
    tm = TorchSmallCNN().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(tm.parameters(), lr=0.01, momentum=0.9)

    def torch_step():
        opt.zero_grad(set_to_none=True)
        out = tm(xt)
        loss = sum(torch.nn.functional.cross_entropy(out[t], yt[t]) for t in out)
        loss.backward()
        opt.step()

    torch_step()
    kt, tt = [], []
    for _ in range(steps):  # interleaved, so both see the same machine load
        t = time.perf_counter()
        km.train_on_batch(xt, yt)
        kt.append(time.perf_counter() - t)
        t = time.perf_counter()
        torch_step()
        tt.append(time.perf_counter() - t)
    return batch / statistics.median(kt), batch / statistics.median(tt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, heads {HEADS | SCENE}")
    print(f"{'backbone':28s} {'size':>4s} {'params':>11s} {'MMACs/img':>10s} {'infer img/s':>12s}")
    for name, kw, size in [("small_cnn w0.5", {"backbone": "small_cnn", "width": 0.5}, args.size),
                           ("small_cnn w1", {"backbone": "small_cnn"}, args.size),
                           ("mobilenetv3small", {"backbone": "mobilenetv3small"}, args.size),
                           ("efficientnet_lite0", {"backbone": "efficientnet_lite0", "pretrained": True}, args.size),
                           ("efficientnetb0", {"backbone": "efficientnetb0"}, 96),
                           ("resnet50", {"backbone": "resnet50"}, 224)]:
        m = GeoMTLModel(HEADS, SCENE, input_size=size, **kw)
        rate = inference_rate(m, size, args.batch if size < 200 else 16)
        print(f"{name:28s} {size:4d} {m.count_params():11,d} {macs_per_image(m, size) / 1e6:10.1f} {rate:12.1f}",
              flush=True)
    k, t = train_rates(args.size, args.batch, args.steps)
    print(f"\ntrain step, small_cnn {args.size}px batch {args.batch}: Keras {k:.0f} img/s, plain PyTorch "
          f"(channels_last) {t:.0f} img/s -> ratio {k / t:.2f} (goal >= 0.95)")


if __name__ == "__main__":
    main()
