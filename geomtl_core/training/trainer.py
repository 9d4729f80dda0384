"""Training with ``keras.Model.fit``: SGD + step decay or AdamW + cosine, a checkpoint every
epoch, and ``resume`` that continues a killed run exactly (weights, optimizer, schedule,
data order and RNG)."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import geomtl_core  # noqa: F401 - selects the torch backend before keras is imported
from geomtl_core import distributed as dist
from geomtl_core.config import ExperimentConfig, differences
from geomtl_core.data.dataset import FaultLog
from geomtl_core.data.features import uses_cached_features
from geomtl_core.data.loaders import (
    load_tables,
    make_partitionings,
    scene_classes,
    split_loader,
    training_rows,
    training_split,
)
from geomtl_core.errors import InputError
from geomtl_core.files import HEADS_FILE, MODEL_FILE, atomic_path, check_run_folder, model_file
from geomtl_core.geo.partitioning import relate
from geomtl_core.inference.evaluation import evaluate_split
from geomtl_core.models.bundle import (
    Bundle,
    read_partitionings,
    save_bundle_metadata,
    save_heads_atomic,
    save_model_atomic,
    write_json_atomic,
)
from geomtl_core.models.multitask import GeoMTLModel, build_model, compile_model
from geomtl_core.training.malloc import keep_freed_memory

import keras
import numpy as np


def make_optimizer(cfg: ExperimentConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """SGD with step decay (GeoEstimation) or AdamW with cosine decay, schedules in optimizer steps."""
    t = cfg.train
    if t.schedule == "step":
        every = max(1, t.step_every) * steps_per_epoch
        n = max(1, t.epochs // max(1, t.step_every))
        lr = keras.optimizers.schedules.PiecewiseConstantDecay(
            [every * k for k in range(1, n + 1)], [t.lr * t.step_gamma**k for k in range(n + 1)]
        )
    elif t.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(t.lr, decay_steps=max(1, t.epochs * steps_per_epoch))
    elif t.schedule == "constant":
        lr = t.lr
    else:
        raise InputError(f"train.schedule must be step, cosine or constant, got {t.schedule!r}")
    if t.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=t.momentum, weight_decay=t.weight_decay or None)
    if t.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=t.weight_decay)
    raise InputError(f"train.optimizer must be sgd or adamw, got {t.optimizer!r}")


class EpochSetup(keras.callbacks.Callback):
    """Before each epoch: data order and all RNGs become a function of (seed, epoch) alone."""

    def __init__(self, loader, seed: int, faults: FaultLog):
        super().__init__()
        self.loader, self.seed, self.faults = loader, seed, faults

    def on_epoch_begin(self, epoch, logs=None):
        order = self.loader.batch_sampler if hasattr(self.loader.batch_sampler, "set_epoch") else self.loader.sampler
        order.set_epoch(epoch)
        if hasattr(self.loader.dataset, "set_epoch"):  # decoded images: their augmentation's generator
            self.loader.dataset.set_epoch(epoch)
        self.loader.generator.manual_seed(self.seed * 7919 + epoch)
        keras.utils.set_random_seed(self.seed * 7919 + epoch)
        self.faults.epoch = epoch


class Checkpoint(keras.callbacks.Callback):
    """Atomically save model + optimizer and the epoch reached; report skipped images. With ``every_s`` > 0 an
    epoch is checkpointed only once that many seconds have passed since the last checkpoint (or the start)."""

    def __init__(self, out: Path, faults: FaultLog, every_s: float = 0.0):
        super().__init__()
        self.out, self.faults, self.every_s = out, faults, every_s
        self.last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        bad = self.faults.entries(epoch)
        if logs is not None:
            logs["skipped_images"] = len(bad)
        if bad:
            print(f"\nepoch {epoch + 1}: skipped {len(bad)} unreadable images (see {self.faults.path})")
        if time.perf_counter() - self.last < self.every_s:
            return
        self.last = time.perf_counter()
        save_model_atomic(self.model, self.out / "checkpoints" / "last.keras")
        write_json_atomic({"epoch": epoch + 1, "logs": {k: float(v) for k, v in (logs or {}).items()}},
                          self.out / "checkpoints" / "state.json")


def truncate_history(path: Path, epochs: int) -> None:
    """Keep the header and the rows of epochs ``< epochs`` of a CSVLogger file, atomically.

    Each epoch's row is written just before its checkpoint, so a run killed between the two has logged an
    epoch that resuming runs again: without this, history.csv would hold that epoch twice. (Checkpointing
    first would instead lose the row of an epoch killed in between.)
    """
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    keep = [line for line in lines[1:] if line.endswith("\n") and line.split(",", 1)[0].isdigit()
            and int(line.split(",", 1)[0]) < epochs]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(lines[:1] + keep))


def _feature_inputs(cfg: ExperimentConfig, full: GeoMTLModel, train_split, val_split, progress: bool):
    """Cached features (of ``full``'s frozen backbone) of train (eval transform) and val, and loaders."""
    from geomtl_core.data.dataset import GeoImageDataset, make_loader
    from geomtl_core.data.features import FeatureDataset, extract_features, feature_cache_path
    from geomtl_core.data.images import TransformConfig
    from geomtl_core.data.loaders import EpochSampler, PairedBatchSampler

    plain = GeoImageDataset(train_split.dataset.source, train_split.labels, TransformConfig(size=cfg.data.image_size),
                            train=False)
    kw = {"workers": cfg.data.workers, "progress": progress}
    for turn in ("first", "others"):  # rank 0 fills the cache; the other processes then read it
        if (turn == "first") == (dist.rank() == 0):
            f_train = extract_features(full, plain, feature_cache_path(cfg, "train"), **kw)
            f_val = extract_features(full, val_split.dataset, feature_cache_path(cfg, "val"), **kw)
        dist.barrier()
    ds = FeatureDataset(f_train, train_split.labels.targets)
    bs = cfg.train.batch_size
    if isinstance(train_split.loader.batch_sampler, PairedBatchSampler):  # the image loader's batches, as features
        loader = make_loader(ds, bs, batch_sampler=train_split.loader.batch_sampler, seed=cfg.train.seed)
    else:
        sampler = EpochSampler(len(ds), cfg.train.seed, rank=dist.rank(), world=dist.world_size(), batch=bs,
                               total=cfg.train.samples_per_epoch)
        loader = make_loader(ds, bs, sampler=sampler, seed=cfg.train.seed, drop_last=len(ds) >= bs)
    val_loader = make_loader(FeatureDataset(f_val, val_split.labels.targets), 256, seed=cfg.train.seed)
    return loader, val_loader


RESUMABLE_KEYS = frozenset({"train.epochs"})
"""Config keys a resumed run may change: more (or fewer) epochs. Anything else would make the resumed
run a different experiment from the one its checkpoint belongs to. The optimizer's learning-rate
schedule is restored from the checkpoint as it was built."""


def resume_config(out: Path, requested: ExperimentConfig | None) -> ExperimentConfig:
    """The saved config of a run, with the changes of ``requested`` that are safe to resume with.

    Refuses (InputError naming each key, saved and requested value) any other change; records an
    accepted change in ``training_log.jsonl`` and in the saved ``config.yaml``.
    """
    saved = ExperimentConfig.load(out / "config.yaml")
    if requested is None:
        return saved
    changed = differences(saved, requested)
    refused = {k: v for k, v in changed.items() if k not in RESUMABLE_KEYS}
    if refused:
        detail = "; ".join(f"{k}: saved {a!r}, requested {b!r}" for k, (a, b) in refused.items())
        raise InputError(f"--resume continues the saved run of {out}; these settings differ from it: {detail}. "
                         f"Only {', '.join(sorted(RESUMABLE_KEYS))} may change on resume; "
                         "start a new run (--out) for anything else")
    if changed and dist.rank() == 0:
        state = json.loads((out / "checkpoints" / "state.json").read_text())
        event = {"event": "resume", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "from_epoch": state["epoch"],
                 "changed": {k: {"saved": a, "now": b} for k, (a, b) in changed.items()}}
        with (out / "training_log.jsonl").open("a") as fh:
            fh.write(json.dumps(event) + "\n")
        requested.save(out / "config.yaml")
        print(f"resuming {out} with changed settings: "
              + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items()))
    return requested


def train(cfg: ExperimentConfig | None, out_dir: str | Path, resume: bool = False, verbose: int | str = "auto") -> dict:
    """Train (or resume) into a bundle folder; returns the final metrics (also in metrics.json).

    With ``resume``, ``cfg`` (None: the saved one) may differ from the saved config only in
    :data:`RESUMABLE_KEYS`; see :func:`resume_config`.
    """
    return fit(cfg, out_dir, resume, verbose).metrics


@dataclasses.dataclass
class Trained:
    """What :func:`fit` leaves: the final metrics and, on rank 0 after training, the bundle it saved as it is in
    memory (evaluating it needs no reload; None on other ranks and for a finished run that was only resumed)."""

    metrics: dict
    bundle: Bundle | None = None


def fit(cfg: ExperimentConfig | None, out_dir: str | Path, resume: bool = False,
        verbose: int | str = "auto", heads_only: bool = False) -> Trained:
    """:func:`train`, keeping the trained bundle in memory for the caller (the compendium's runs evaluate test
    and score the hybrid with it). ``heads_only``: a run whose backbone is frozen whole saves its trained neck and
    heads (:data:`~geomtl_core.files.HEADS_FILE`, their weights alone) instead of the image model (23 MiB of an ImageNet
    backbone every such run shares); the bundle loads and publishes as an image model all the same."""
    out = Path(out_dir)
    state_path = check_run_folder(out, resume)
    dist.init_from_env()
    keep_freed_memory()  # on a CPU: steps reuse their freed activation buffers instead of faulting in fresh pages
    if resume:
        cfg = resume_config(out, cfg)
        done = json.loads(state_path.read_text())["epoch"] >= cfg.train.epochs
        if done and (out / "metrics.json").exists() and model_file(out) is not None:
            print(f"{out}: already finished ({cfg.train.epochs} epochs); nothing to resume, nothing rewritten "
                  "(raise train.epochs with --set to train on)", file=sys.stderr)
            return Trained(json.loads((out / "metrics.json").read_text()))
    elif cfg is None:
        raise InputError("a new training run needs a config")
    from geomtl_core.models.precision import dtype_policy
    from geomtl_core.models.sync_bn import set_sync_batchnorm

    keras.config.set_dtype_policy(dtype_policy(cfg.train.mixed_precision))  # before any layer is built
    set_sync_batchnorm(cfg.model.sync_bn)  # only acts when data-parallel (world size > 1)
    lead = dist.rank() == 0
    verbose = verbose if lead else 0
    keras.utils.set_random_seed(cfg.train.seed)
    progress = verbose not in (0, "0")
    tables = load_tables(cfg, ("train", "val"))
    val_meta = tables["val"]
    train_meta, geo_rows = training_rows(cfg, tables["train"])
    if resume:
        parts = read_partitionings(out)
        scene = json.loads((out / "labels.json").read_text())["scene_tasks"]
    else:
        parts = make_partitionings(cfg, tables["train"] if cfg.partition.from_full_train else train_meta)
        scene = scene_classes(cfg, [train_meta, val_meta])
        if lead:
            save_bundle_metadata(out, cfg, parts, scene)
        dist.barrier()
    faults = FaultLog(out / "faults.tsv")
    # with geo_rows: auxiliary labels on every image, geo labels on the run's share only (paired batches)
    train_split, geo_labelled = training_split(cfg, train_meta, geo_rows, parts, faults)
    val_split = split_loader(cfg, "val", val_meta, parts, train=False)
    cached = uses_cached_features(cfg)
    if cached:  # the final image model, built first (seeded), provides the frozen backbone
        keras.utils.set_random_seed(cfg.train.seed)
        full = build_model(cfg, parts, scene)
        full(np.zeros((1, cfg.data.image_size, cfg.data.image_size, 3), "uint8"))
        loader, val_loader = _feature_inputs(cfg, full, train_split, val_split, progress)
    else:
        loader, val_loader = train_split.loader, val_split.loader
    if resume:
        model = keras.saving.load_model(out / "checkpoints" / "last.keras", safe_mode=True)
        initial_epoch = json.loads(state_path.read_text())["epoch"]
    else:
        # reseeded here, after the feature extraction: the two arms of a comparison (with and without a scene
        # head) start from the same neck and geo heads and draw the same dropout masks, so that their
        # difference carries less seed noise; built at once, in the order neck, geo heads, scene heads
        keras.utils.set_random_seed(cfg.train.seed)
        model = build_model(cfg, parts, scene, cached_inputs=cached)
        model(next(iter(loader))[0])
        if cfg.train.init_from:  # e.g. an individual scene network fine-tuned from the base model
            from geomtl_core.models.bundle import start_from_bundle

            start_from_bundle(model, cfg.train.init_from)
        compile_model(model, make_optimizer(cfg, len(loader)))
        initial_epoch = 0
    dist.broadcast_weights(model)
    callbacks = [EpochSetup(loader, cfg.train.seed, faults), dist.ReduceLogs()]
    if lead:  # one writer: logs and checkpoints come from rank 0 only; an epoch is logged, then checkpointed
        if resume:  # forget epochs logged after the checkpoint (killed in between): they run again
            truncate_history(out / "history.csv", initial_epoch)
        callbacks += [keras.callbacks.CSVLogger(str(out / "history.csv"), append=resume),
                      Checkpoint(out, faults, cfg.train.checkpoint_every_s)]
    start = time.perf_counter()
    if initial_epoch < cfg.train.epochs:
        model.fit(loader, epochs=cfg.train.epochs, initial_epoch=initial_epoch, callbacks=callbacks,
                  verbose=verbose, shuffle=False, validation_data=val_loader if cfg.train.validate else None)
    train_time = time.perf_counter() - start
    if not lead:
        dist.barrier()
        return Trained({})
    metrics = {"train_time_s": round(train_time, 1), "train_images": len(train_split.dataset),
               "geo_labelled_images": geo_labelled,
               "data_report": train_split.labels.report, "cached_features": cached}
    hierarchy = relate(parts) if cfg.partition.hierarchical else None
    eval_split = dataclasses.replace(val_split, loader=val_loader)
    metrics["val"] = evaluate_split(model, eval_split, parts, hierarchy, out / "predictions_val.csv",
                                    progress=progress, fit_remedies=True)
    if "remedies" in metrics["val"]:  # fitted on validation, applied unchanged to any later split
        write_json_atomic(metrics["val"]["remedies"], out / "remedies.json")
    heads = model
    if cached:  # the bundle holds an ordinary image model: frozen backbone + the trained neck and heads
        from geomtl_core.models.finetune import transfer_head_weights

        transfer_head_weights(model, full)
        model = full
    metrics["params"] = int(model.count_params())
    if heads_only and cached and cfg.model.pretrained and cfg.model.freeze_backbone and not cfg.model.finetune_blocks:
        save_heads_atomic(heads, out / HEADS_FILE)
    else:
        save_model_atomic(model, out / MODEL_FILE)
    write_json_atomic(metrics, out / "metrics.json")
    dist.barrier()
    labels = json.loads((out / "labels.json").read_text())
    return Trained(metrics, Bundle(out, model, parts, relate(parts), labels, cfg))


def final_logs(out: str | Path) -> dict[str, float]:
    """Last row of the training log (for comparing resumed and uninterrupted runs)."""
    import csv

    rows = list(csv.DictReader((Path(out) / "history.csv").open()))
    last = {k: float(v) for k, v in rows[-1].items() if k != "epoch" and v not in ("", "NA")}
    return last | {"epochs_logged": float(len(rows))}
