"""Every backbone of the model builder: parameters, multiply-accumulates per image and inference
images/s; and the Keras train step against an equivalent plain-PyTorch loop (same architecture, batch,
input, optimizer), median of many interleaved steps, printed as a ratio (goal >= 0.95).

Train comparisons, what the book trains (default scale: 64 px, batch 512, neck 512): (a) the grid's small
CNN from scratch (width 0.5, ``conv_padding="same_symmetric"``, as torch's padding=1), (b) neck and heads on
cached 1280-d features (the frozen backbone), (c) EfficientNet-Lite0's last two blocks tuned on cached
activations. Each with the book's recipe (AdamW, weight decay, label smoothing 0.1, dropout 0.5) and with
SGD, side by side; and all of it in two processes at once, one with
glibc keeping freed memory (``training/malloc.py``) and one with glibc's defaults, run round by round in
turn. The Keras step is what ``fit`` runs per batch, compiled by ``compile_model`` (per-task top-1
accuracies); the torch loop keeps the same bookkeeping. The output names the CPU and the load average.

Run: .venv/bin/python benchmarks/bench_models.py [--size 64] [--batch 512] [--steps 20] [--train abc] [--train-only]
"""

from __future__ import annotations

import argparse
import statistics
import time

import geomtl_core  # noqa: F401
from geomtl_core.models.multitask import GeoMTLModel, compile_model
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

    def __init__(self, cin: int, neck: int = 256, dropout: float = 0.2):
        super().__init__()
        self.neck = torch.nn.Sequential(torch.nn.Linear(cin, neck, bias=False), torch.nn.BatchNorm1d(neck),
                                        torch.nn.ReLU(), torch.nn.Dropout(dropout))
        self.heads = torch.nn.ModuleDict({t: torch.nn.Linear(neck, n) for t, n in {**HEADS, **SCENE}.items()})

    def forward(self, f):
        f = self.neck(f)
        return {t: h(f) for t, h in self.heads.items()}


class TorchSmallCNN(torch.nn.Module):
    """The same network as GeoMTLModel(backbone="small_cnn", conv_padding="same_symmetric") in plain PyTorch
    (channels_last memory)."""

    def __init__(self, width: float = 1.0, neck: int = 256, dropout: float = 0.2):
        super().__init__()
        layers, cin = [], 3
        for ch in (32, 64, 128, 256):
            c = max(8, int(ch * width))
            layers += [torch.nn.Conv2d(cin, c, 3, 2, 1, bias=False), torch.nn.BatchNorm2d(c, momentum=0.1),
                       torch.nn.ReLU()]
            cin = c
        self.backbone = torch.nn.Sequential(*layers)
        self.top = TorchNeckHeads(cin, neck, dropout)

    def forward(self, x):
        x = x.permute(0, 3, 1, 2).float().div(255.0).contiguous(memory_format=torch.channels_last)
        return self.top(self.backbone(x).mean(dim=(2, 3)))


class TorchLite0Tail(torch.nn.Module):
    """efficientnet_lite_pytorch's EfficientNet-Lite0 from block ``first`` on (no drop-connect: the Keras port
    has none) + pooling, neck and heads, on flattened NHWC activations: GeoMTLModel(backbone=
    "efficientnet_lite0", finetune_blocks=16 - first, inputs="activations"), what the book's tuned runs train."""

    def __init__(self, size: int, first: int, shape: tuple[int, int, int], neck: int = 256, dropout: float = 0.2):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-lite0", image_size=size, drop_connect_rate=0.0)
        self.blocks = torch.nn.ModuleList(net._blocks[first:])
        self.conv_head, self.bn, self.act = net._conv_head, net._bn1, net._swish
        self.shape = shape
        self.top = TorchNeckHeads(1280, neck, dropout)

    def forward(self, flat):
        x = flat.view(-1, *self.shape).permute(0, 3, 1, 2)  # NCHW view, channels_last memory
        for block in self.blocks:
            x = block(x, drop_connect_rate=0.0)
        return self.top(self.act(self.bn(self.conv_head(x))).mean(dim=(2, 3)))


# The recipes compared: the book's (compendium.design.RECIPES "regularised_*" on the default scale: AdamW with
# decoupled weight decay 0.05, label smoothing 0.1, dropout 0.5, lr 2e-3) and GeoEstimation's SGD (configs/mp16_*:
# momentum 0.9, weight decay 1e-4), with the same dropout. Keras' AdamW eps is 1e-7 (torch's default 1e-8).
BOOK = {"lr": 2e-3, "weight_decay": 0.05, "label_smoothing": 0.1, "dropout": 0.5}
SGD_RECIPE = {"lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4, "label_smoothing": 0.0, "dropout": 0.5}


def _case(which: str, size: int, batch: int, neck: int, tune_blocks: int):
    """(label, make_keras(label_smoothing, dropout), make_torch(dropout), inputs): one of the book's models."""
    rng = np.random.default_rng(0)
    if which == "a":  # the grid's small CNNs (width 0.5; 0.25 is the other) from scratch
        x = rng.integers(0, 255, (batch, size, size, 3)).astype(np.uint8)
        return (f"(a) small_cnn w0.5 {size}px, batch {batch}",
                lambda ls, d: GeoMTLModel(HEADS, SCENE, backbone="small_cnn", width=0.5, input_size=size,
                                          conv_padding="same_symmetric", neck_units=neck, dropout=d,
                                          label_smoothing=ls),
                lambda d: TorchSmallCNN(0.5, neck, d).to(memory_format=torch.channels_last), x)
    if which == "b":  # the frozen backbone: neck and heads on cached features
        x = rng.normal(size=(batch, 1280)).astype(np.float32)
        return (f"(b) neck {neck}+heads on cached features (1280), batch {batch}",
                lambda ls, d: GeoMTLModel(HEADS, SCENE, backbone="features", input_size=size, neck_units=neck,
                                          dropout=d, label_smoothing=ls),
                lambda d: TorchNeckHeads(1280, neck, d), x)
    if which == "c":  # EfficientNet-Lite0's last blocks tuned on cached activations
        full = GeoMTLModel(HEADS, SCENE, backbone="efficientnet_lite0", input_size=size, pretrained=True,
                           finetune_blocks=tune_blocks)
        imgs = torch.from_numpy(rng.integers(0, 255, (batch, size, size, 3)).astype(np.uint8))
        with torch.no_grad():
            x = full.backbone_features(imgs).numpy()
        shape = tuple(full.backbone.get_layer(full.tuned_from).input.shape[1:])
        first = 16 - tune_blocks
        return (f"(c) efficientnet_lite0, last {tune_blocks} blocks tuned on activations {size}px, batch {batch}",
                lambda ls, d: GeoMTLModel(HEADS, SCENE, backbone="efficientnet_lite0", input_size=size, neck_units=neck,
                                          finetune_blocks=tune_blocks, inputs="activations", dropout=d,
                                          label_smoothing=ls),
                lambda d: TorchLite0Tail(size, first, shape, neck, d), x)
    raise ValueError(which)


def _steps(which: str, size: int, batch: int, neck: int, tune_blocks: int):
    """The train steps compared for one model, each a no-argument callable: Keras (``model.train_function``,
    what ``fit`` runs per batch, compiled by ``compile_model`` with its per-task accuracies) and plain torch
    keeping the same per-task loss means and top-1 hits (accumulated in tensors, as a Lightning-style loop logs
    them), for the book's AdamW recipe and for SGD."""
    import keras

    label, make_keras, make_torch, x = _case(which, size, batch, neck, tune_blocks)
    rng = np.random.default_rng(1)
    yt = {t: torch.from_numpy(rng.integers(0, n, batch)) for t, n in {**HEADS, **SCENE}.items()}
    xt = torch.from_numpy(x)

    def keras_step(recipe, optimizer):
        model = make_keras(recipe["label_smoothing"], recipe["dropout"])
        compile_model(model, optimizer)
        for _ in range(2):  # warm-up (builds, allocator, optimizer state)
            model.train_on_batch(xt, yt)
        model.reset_metrics()
        model.make_train_function()
        fn = model.train_function
        return lambda: fn([(xt, yt)])

    def torch_step(recipe, adamw: bool):
        tm = make_torch(recipe["dropout"])
        tm.train()
        if adamw:
            opt = torch.optim.AdamW(tm.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"], eps=1e-7)
        else:
            opt = torch.optim.SGD(tm.parameters(), lr=recipe["lr"], momentum=recipe["momentum"],
                                  weight_decay=recipe["weight_decay"])
        sums = {t: torch.zeros(3) for t in yt}  # loss sum, hits, labelled count per task
        ls = recipe["label_smoothing"]

        def step():
            opt.zero_grad(set_to_none=True)
            out = tm(xt)
            losses = {t: torch.nn.functional.cross_entropy(out[t], yt[t], label_smoothing=ls) for t in out}
            sum(losses.values()).backward()
            opt.step()
            with torch.no_grad():
                for t, ce in losses.items():
                    sums[t] += torch.stack([ce.detach(), (out[t].argmax(dim=1) == yt[t]).sum(), torch.tensor(batch)])

        for _ in range(2):
            step()
        return step

    sgd = {k: SGD_RECIPE[k] for k in ("momentum", "weight_decay")}
    steps = {
        "keras adamw": keras_step(BOOK, keras.optimizers.AdamW(BOOK["lr"], weight_decay=BOOK["weight_decay"])),
        "torch adamw": torch_step(BOOK, True),
        "keras sgd": keras_step(SGD_RECIPE, keras.optimizers.SGD(SGD_RECIPE["lr"], **sgd)),
        "torch sgd": torch_step(SGD_RECIPE, False),
    }
    return label, steps


def _worker(conn, malloc: bool) -> None:
    """A benchmark process (``malloc``: glibc keeps freed memory, as training does): builds a case's steps
    when told, runs one round of them (in the rotated order it is given) per request, returns the times."""
    if malloc:
        keep_freed_memory()
    steps = {}
    while True:
        cmd, arg = conn.recv()
        if cmd == "build":
            steps = {}  # free the previous case first
            label, steps = _steps(*arg)
            conn.send((label, list(steps)))
        elif cmd == "round":
            names = list(steps)
            times = {}
            for name in names[arg % len(names):] + names[:arg % len(names)]:
                t = time.perf_counter()
                steps[name]()
                times[name] = time.perf_counter() - t
            conn.send(times)
        else:
            return


def train_comparisons(size: int, batch: int, steps: int, which: str = "abc", neck: int = 512,
                      tune_blocks: int = 2, mallocs: tuple[bool, ...] = (True, False)) -> list[tuple[str, dict]]:
    """(label, {(malloc, step name): img/s}) per case: the median over ``steps`` rounds of every train step,
    interleaved step by step inside a process (rotating the order) and round by round across one process per
    malloc setting (alternating which goes first), so all see the same machine load."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    workers = {}
    for malloc in mallocs:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child, malloc), daemon=True)
        proc.start()
        workers[malloc] = (proc, parent)
    rows = []
    try:
        for case in which:
            label = None
            for _, conn in workers.values():
                conn.send(("build", (case, size, batch, neck, tune_blocks)))
            for _, conn in workers.values():
                label, names = conn.recv()
            times = {(m, n): [] for m in workers for n in names}
            order = list(workers)
            for k in range(steps):
                for malloc in order[k % len(order):] + order[:k % len(order)]:
                    conn = workers[malloc][1]
                    conn.send(("round", k))
                    for name, t in conn.recv().items():
                        times[(malloc, name)].append(t)
            rows.append((label, {key: batch / statistics.median(v) for key, v in times.items()}))
    finally:
        for proc, conn in workers.values():
            conn.send(("stop", None))
            proc.join(timeout=30)
    return rows


def machine() -> str:
    """The CPU model (/proc/cpuinfo), core count and load average, for the benchmark's output."""
    import os

    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{cpu}, {os.cpu_count()} cores, load average {load}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=512, help="train batch (the default scale's: 512)")
    ap.add_argument("--neck", type=int, default=512, help="neck units (the compendium's: 512)")
    ap.add_argument("--steps", type=int, default=20, help="interleaved rounds per train comparison")
    ap.add_argument("--train", default="abc", help="which train comparisons: any of a, b, c")
    ap.add_argument("--train-only", action="store_true", help="skip the per-backbone inference table")
    args = ap.parse_args()
    print(f"{machine()}\ntorch {torch.__version__}, {torch.get_num_threads()} threads, heads {HEADS | SCENE}")
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
        rate = inference_rate(m, size, 64 if size < 200 else 16)
        print(f"{name:28s} {size:4d} {m.count_params():11,d} {macs_per_image(m, size) / 1e6:10.1f} {rate:12.1f}",
              flush=True)
    print_train(args)


def print_train(args) -> None:
    print("\ntrain step, median img/s over interleaved steps; Keras (model.train_function, compile_model's per-task\n"
          "accuracies) against plain PyTorch (channels_last) keeping the same per-task loss means and top-1 hits.\n"
          f"book: AdamW lr {BOOK['lr']} weight decay {BOOK['weight_decay']}, "
          f"label smoothing {BOOK['label_smoothing']}, "
          f"dropout {BOOK['dropout']}; sgd: momentum {SGD_RECIPE['momentum']}, weight decay "
          f"{SGD_RECIPE['weight_decay']}, dropout {SGD_RECIPE['dropout']}.\n"
          "malloc on: glibc keeps freed memory (training/malloc.py); off: glibc's defaults; one process each.")
    head = f"{'':10s} {'K adamw':>8s} {'T adamw':>8s} {'ratio':>6s} | {'K sgd':>7s} {'T sgd':>7s} {'ratio':>6s}"
    for label, r in train_comparisons(args.size, args.batch, args.steps, args.train, args.neck):
        print(f"\n{label}\n{head}")
        for malloc in (True, False):
            ka, ta = r[(malloc, "keras adamw")], r[(malloc, "torch adamw")]
            ks, ts = r[(malloc, "keras sgd")], r[(malloc, "torch sgd")]
            print(f"{'malloc ' + ('on' if malloc else 'off'):10s} {ka:8.0f} {ta:8.0f} {ka / ta:6.2f} | "
                  f"{ks:7.0f} {ts:7.0f} {ks / ts:6.2f}")
        on_off = [r[(True, n)] / r[(False, n)] for n in ("keras adamw", "torch adamw", "keras sgd", "torch sgd")]
        print("malloc on/off: Keras AdamW {:.2f}, torch AdamW {:.2f}, Keras SGD {:.2f}, torch SGD {:.2f}".format(
            *on_off), flush=True)
    print(f"\n{machine()} (after)")


if __name__ == "__main__":
    main()
