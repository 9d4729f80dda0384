"""Every backbone of the model builder: parameters, multiply-accumulates per image and inference
images/s; and the Keras train step against an equivalent plain-PyTorch loop (same architecture,
batch, input, SGD), median of many interleaved steps, printed as a ratio (goal >= 0.95).

Train comparisons: (a) small CNN end to end (``conv_padding="same_symmetric"``, as torch's padding=1),
(b) neck and heads on cached 1280-d features (batch 256), (c) EfficientNet-Lite0 fine-tuning. Two pairs:
the Keras step (what ``fit`` runs per batch) compiled by ``compile_model``, which keeps per-task top-1
accuracies, against the torch loop keeping the same bookkeeping; and Keras compiled without metrics
against the torch loop keeping none ("bare").

Run: .venv/bin/python benchmarks/bench_models.py [--size 64] [--batch 64] [--steps 50] [--train abc] [--train-only]
"""

from __future__ import annotations

import argparse
import statistics
import time

import geomtl_core  # noqa: F401
from geomtl_core.models.multitask import GeoMTLModel, compile_model
from geomtl_core.models.optimizers import SGD
from geomtl_core.training.malloc import keep_freed_memory

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


class TorchNeckHeads(torch.nn.Module):
    """GeoMTLModel's neck (Dense, BatchNorm, ReLU, Dropout) and heads in plain PyTorch."""

    def __init__(self, cin: int, neck: int = 256):
        super().__init__()
        self.neck = torch.nn.Sequential(torch.nn.Linear(cin, neck, bias=False), torch.nn.BatchNorm1d(neck),
                                        torch.nn.ReLU(), torch.nn.Dropout(0.2))
        self.heads = torch.nn.ModuleDict({t: torch.nn.Linear(neck, n) for t, n in {**HEADS, **SCENE}.items()})

    def forward(self, f):
        f = self.neck(f)
        return {t: h(f) for t, h in self.heads.items()}


class TorchSmallCNN(torch.nn.Module):
    """The same network as GeoMTLModel(backbone="small_cnn", conv_padding="same_symmetric") in plain PyTorch
    (channels_last memory)."""

    def __init__(self, width: float = 1.0, neck: int = 256):
        super().__init__()
        layers, cin = [], 3
        for ch in (32, 64, 128, 256):
            c = max(8, int(ch * width))
            layers += [torch.nn.Conv2d(cin, c, 3, 2, 1, bias=False), torch.nn.BatchNorm2d(c, momentum=0.1),
                       torch.nn.ReLU()]
            cin = c
        self.backbone = torch.nn.Sequential(*layers)
        self.top = TorchNeckHeads(cin, neck)

    def forward(self, x):
        x = x.permute(0, 3, 1, 2).float().div(255.0).contiguous(memory_format=torch.channels_last)
        return self.top(self.backbone(x).mean(dim=(2, 3)))


class TorchEffNetLite0(torch.nn.Module):
    """efficientnet_lite_pytorch's EfficientNet-Lite0 (TF "same" padding for the input size, no drop-connect:
    the Keras port has none) + pooling, neck and heads, as GeoMTLModel(backbone="efficientnet_lite0")."""

    def __init__(self, size: int, neck: int = 256):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        self.backbone = EfficientNet.from_name("efficientnet-lite0", image_size=size, drop_connect_rate=0.0)
        self.backbone._fc = torch.nn.Identity()
        self.top = TorchNeckHeads(1280, neck)

    def forward(self, x):
        x = x.permute(0, 3, 1, 2).float().sub(127.0).div(128.0).contiguous(memory_format=torch.channels_last)
        return self.top(self.backbone.extract_features(x).mean(dim=(2, 3)))


def compare_training(make_keras, tm: torch.nn.Module, x: np.ndarray, steps: int) -> dict[str, float]:
    """Median images/s of four train steps, interleaved step by step (rotating the order) so all see the same
    machine load: the Keras step compiled by ``compile_model`` (per-task top-1 accuracies) and compiled with
    no metrics, and the plain torch step (SGD momentum 0.9, summed cross-entropies) with the same per-task
    loss-mean and top-1 bookkeeping (accumulated in tensors, as a Lightning-style loop logs them) and with none.

    A Keras step is ``model.train_function``, what ``fit`` runs for every batch (metrics accumulate over
    the steps as in an epoch); ``train_on_batch`` adds a metrics reset and a logs conversion per call."""
    rng = np.random.default_rng(0)
    batch = len(x)
    yt = {t: torch.from_numpy(rng.integers(0, n, batch)) for t, n in {**HEADS, **SCENE}.items()}
    xt = torch.from_numpy(x)
    km, bare = make_keras(), make_keras()
    compile_model(km, SGD(0.01, momentum=0.9))
    bare.compile(optimizer=SGD(0.01, momentum=0.9))  # no compiled metrics (the loss means are always kept)
    opt = torch.optim.SGD(tm.parameters(), lr=0.01, momentum=0.9)
    tm.train()
    sums = {t: torch.zeros(3) for t in yt}  # loss sum, hits, labelled count per task

    def torch_step(metrics: bool = False):
        opt.zero_grad(set_to_none=True)
        out = tm(xt)
        losses = {t: torch.nn.functional.cross_entropy(out[t], yt[t]) for t in out}
        loss = sum(losses.values())
        loss.backward()
        opt.step()
        if metrics:
            with torch.no_grad():
                for t, ce in losses.items():
                    sums[t] += torch.stack([ce.detach(), (out[t].argmax(dim=1) == yt[t]).sum(), torch.tensor(batch)])

    steps_of = {}
    for name, model in (("keras", km), ("keras bare", bare)):
        for _ in range(2):  # warm-up (builds, allocator, optimizer state)
            model.train_on_batch(xt, yt)
        model.reset_metrics()
        model.make_train_function()
        steps_of[name] = (lambda f: lambda: f([(xt, yt)]))(model.train_function)
    for _ in range(2):
        torch_step(True)
    steps_of |= {"torch+metrics": lambda: torch_step(True), "torch bare": torch_step}
    names = list(steps_of)
    times = {name: [] for name in names}
    for k in range(steps):  # rotating which goes first, so none always follows the same one
        for name in names[k % len(names):] + names[:k % len(names)]:
            t = time.perf_counter()
            steps_of[name]()
            times[name].append(time.perf_counter() - t)
    return {name: batch / statistics.median(times[name]) for name in names}


def train_comparisons(size: int, batch: int, steps: int, which: str = "abc") -> list[tuple[str, dict]]:
    """(label, img/s of the four steps): (a) small CNN, (b) neck+heads on cached features, (c) Lite0."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (batch, size, size, 3)).astype(np.uint8)
    rows = []
    if "a" in which:
        tm = TorchSmallCNN().to(memory_format=torch.channels_last)
        rows.append((f"(a) small_cnn {size}px, batch {batch}", compare_training(
            lambda: GeoMTLModel(HEADS, SCENE, backbone="small_cnn", input_size=size, conv_padding="same_symmetric"),
            tm, images, steps * 4)))
    if "b" in which:
        feats = rng.normal(size=(256, 1280)).astype(np.float32)
        rows.append(("(b) neck+heads on cached features (1280), batch 256", compare_training(
            lambda: GeoMTLModel(HEADS, SCENE, backbone="features", input_size=size),
            TorchNeckHeads(1280), feats, steps * 6)))
    if "c" in which:
        tm = TorchEffNetLite0(size).to(memory_format=torch.channels_last)
        rows.append((f"(c) efficientnet_lite0 fine-tuning {size}px, batch {batch}", compare_training(
            lambda: GeoMTLModel(HEADS, SCENE, backbone="efficientnet_lite0", input_size=size),
            tm, images, max(5, steps // 2))))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=50, help="(a) 4x, (b) 6x, (c) 0.5x this many rounds")
    ap.add_argument("--train", default="abc", help="which train comparisons: any of a, b, c")
    ap.add_argument("--train-only", action="store_true", help="skip the per-backbone inference table")
    args = ap.parse_args()
    keep_freed_memory()  # as training does (both loops below run in this process, under the same allocator)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, heads {HEADS | SCENE}")
    if args.train_only:
        return print_train(args)
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
    print_train(args)


def print_train(args) -> None:
    print("\ntrain step, Keras (lean train_step, fused layers) vs plain PyTorch (channels_last), median img/s;\n"
          "with metrics: Keras compiled by compile_model (per-task accuracy) vs torch keeping the same per-task\n"
          "loss means and top-1 hits; bare: Keras compiled without metrics vs torch keeping nothing (goal >= 0.95)")
    print(f"{'':52s} {'Keras':>7s} {'PyTorch':>8s} {'ratio':>6s} | {'bare':>7s} {'PyTorch':>8s} {'ratio':>6s}")
    for label, r in train_comparisons(args.size, args.batch, args.steps, args.train):
        k, t, kb, tb = r["keras"], r["torch+metrics"], r["keras bare"], r["torch bare"]
        print(f"{label:52s} {k:7.0f} {t:8.0f} {k / t:6.2f} | {kb:7.0f} {tb:8.0f} {kb / tb:6.2f}", flush=True)

if __name__ == "__main__":
    main()
