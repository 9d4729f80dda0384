"""The typed experiment configuration: one object read by training, evaluation and notebooks.

A YAML file (or a notebook's parameters) overrides the defaults with nested keys, e.g.
``{"model": {"backbone": "small_cnn"}, "train": {"epochs": 3}}``; unknown keys are errors (naming the
closest valid key). Every numeric field has an allowed range (:data:`RANGES`) and some string fields a set
of choices (:data:`CHOICES`): a config is checked whole when it is built, before anything is trained or
written, and a bad value is one line naming the key, the value and what is allowed. This module imports
neither torch nor keras, so the command line reports a bad config at once.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from geomtl_core.errors import InputError

import yaml


@dataclass
class DataConfig:
    """Where the images and metadata are, and the input transform."""

    root: str = "data/proxy"
    train: str = "train"
    val: str = "val"
    test: str = "test"
    images: str = ""  # one image folder for every split (e.g. a cross-validation pool); "": each split's own
    image_size: int = 64
    train_fraction: float = 1.0
    scene_tasks: list[str] = field(default_factory=lambda: ["s3"])
    workers: int = 2
    five_crop: bool = False
    cache_dir: str = "data/cache"
    flip: bool = False  # horizontal flips mirror geography (coastlines, driving side, text): off unless asked
    jitter: float = 0.2  # colour jitter strength of the training transform; 0: none (GeoEstimation had none)
    scene_on_all: bool = False  # with train_fraction < 1: scene labels on every training image, geo on the fraction
    aux_control: str = "none"  # scene labels as given, "shuffled" (no information) or "geographic" (a region code)
    subset_task: str = ""  # train only on images whose label ``subset_task`` is ``subset_class`` (ISN models)
    subset_class: int = -1
    # decode the training images once per run and augment whole batches (data/decoded.py): for small models,
    # whose epoch otherwise costs its JPEGs and per-image transforms more than its convolutions
    decode_once: bool = False


@dataclass
class PartitionConfig:
    """Adaptive S2 partitionings built from the training coordinates (or read from files)."""

    tau_min: int = 50
    tau_max: list[int] = field(default_factory=lambda: [5000, 2000, 1000])
    cells_files: list[str] = field(default_factory=list)
    hierarchical: bool = True
    from_full_train: bool = True  # built on the whole training split, whatever share of it a run trains on


@dataclass
class ModelConfig:
    """Backbone, shared neck and heads; loss weighting fixed or learned (Kendall et al. 2018)."""

    backbone: str = "small_cnn"
    width: float = 1.0
    pretrained: bool = False
    freeze_backbone: bool = False
    neck_units: int = 256  # 0: no neck, pooled backbone features go straight to the heads (GeoEstimation)
    neck_norm: str = "batch"
    dropout: float = 0.2
    loss_weighting: str = "fixed"
    scene_weight: float = 1.0
    finetune_blocks: int = 0  # efficientnet_lite0: train its last k blocks and head conv (frozen below)
    sync_bn: bool = True  # data-parallel: resnet50's BatchNorm uses the global batch's statistics
    # small_cnn's stride-2 convolutions: "same" is Keras/TensorFlow "same" (what configs and bundles saved before
    # this field mean, so resuming them rebuilds their network); "same_symmetric" pads 1 on every side (torch's
    # padding=1: no pad copy, faster to train; a different network), what the experiment grid's small CNNs use
    conv_padding: str = "same"


@dataclass
class TrainConfig:
    """Optimiser and schedule (GeoEstimation: SGD lr 0.01, momentum 0.9, wd 1e-4, step decay)."""

    epochs: int = 5
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "step"
    step_every: int = 4
    step_gamma: float = 0.5
    seed: int = 0
    cache_features: bool = True  # frozen backbone (or frozen part of it): train on cached activations
    label_smoothing: float = 0.0
    samples_per_epoch: int = 0  # 0: one pass over the data; else this many samples (equal steps for any fraction)
    validate: bool = True  # validation losses and accuracies after every epoch (in history.csv)
    mixed_precision: str = "auto"  # "auto": mixed_bfloat16 with a CUDA GPU, float32 without; or either name
    init_from: str = ""  # a model bundle whose trained neck and heads start this run (same cells and heads)
    retrieval: bool = False  # test also scores the hybrid and kNN predictors (frozen-feature runs; inference.hybrid)
    checkpoint_every_s: float = 0.0  # 0: a checkpoint after every epoch; else only once this long has passed since
    # the last (or the start): a run shorter than a checkpoint is worth restarts when killed instead of resuming


@dataclass
class ExperimentConfig:
    """Everything that defines one training run."""

    name: str = "geomtl"
    data: DataConfig = field(default_factory=DataConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None = None) -> ExperimentConfig:
        return merge(cls(), data or {})

    @classmethod
    def load(cls, path: str | Path) -> ExperimentConfig:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise InputError(f"{path}: expected a mapping at the top level")
        return cls.from_dict(data)


@dataclass(frozen=True)
class Range:
    """An allowed interval of a numeric field: ``lo``/``hi`` (None: unbounded), open or closed ends.

    >>> str(Range(0, 1, lo_open=True)), Range(0, 1, lo_open=True).contains(0)
    ('in (0, 1]', False)
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def contains(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return not (self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi))

    def __str__(self) -> str:
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        if self.lo is None:
            return f"{'<' if self.hi_open else '<='} {self.hi:g}"
        return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"


RANGES: dict[str, Range] = {
    "data.image_size": Range(16),
    "data.train_fraction": Range(0, 1, lo_open=True),
    "data.workers": Range(0),
    "data.jitter": Range(0),
    "data.subset_class": Range(-1),
    "partition.tau_min": Range(1),
    "partition.tau_max": Range(1),  # each; and each >= partition.tau_min (checked in validate)
    "model.width": Range(0, lo_open=True),
    "model.neck_units": Range(0),
    "model.dropout": Range(0, 1, hi_open=True),
    "model.scene_weight": Range(0),
    "model.finetune_blocks": Range(0),
    "train.epochs": Range(1),
    "train.batch_size": Range(1),
    "train.lr": Range(0, lo_open=True),
    "train.momentum": Range(0, 1, hi_open=True),
    "train.weight_decay": Range(0),
    "train.step_every": Range(1),
    "train.step_gamma": Range(0, 1, lo_open=True),
    "train.seed": Range(0),
    "train.label_smoothing": Range(0, 1, hi_open=True),
    "train.samples_per_epoch": Range(0),
    "train.checkpoint_every_s": Range(0.0),
}
"""The allowed range of every numeric config field (lists: of each element), by dotted key."""

CHOICES: dict[str, tuple[str, ...]] = {
    "data.aux_control": ("none", "shuffled", "geographic"),
    "model.neck_norm": ("batch", "layer"),
    "model.loss_weighting": ("fixed", "learned"),
    "model.conv_padding": ("same", "same_symmetric"),
    "train.optimizer": ("sgd", "adamw"),
    "train.schedule": ("step", "cosine", "constant"),
    "train.mixed_precision": ("auto", "float32", "mixed_bfloat16"),
}
"""The valid values of string fields that have a fixed set (``model.backbone`` is checked by the model)."""

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""The split names of a data folder (``SPLIT.csv`` beside ``SPLIT/`` shards)."""


def closest(name: str, valid, what: str = "") -> str:
    """``"; did you mean X?"`` for the valid name closest to ``name`` (difflib), or ``""`` if none is close.

    >>> closest("tset", ["train", "val", "test"])
    '; did you mean test?'
    """
    match = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1, cutoff=0.6)
    return f"; did you mean {what}{match[0]}?" if match else ""


def validate_split_name(split: str) -> str:
    """``split`` if it is one of :data:`SPLITS`, else an :class:`InputError` naming the valid ones.

    >>> validate_split_name("tset")
    Traceback (most recent call last):
    ...
    geomtl_core.errors.InputError: unknown split name 'tset' (valid: train, val, test); did you mean test?
    """
    if split not in SPLITS:
        raise InputError(f"unknown split name {split!r} (valid: {', '.join(SPLITS)}){closest(split, SPLITS)}")
    return split


def validate(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` if every field is in its range (:data:`RANGES`, :data:`CHOICES`), else one :class:`InputError`
    naming the key, the value and what is allowed.

    >>> ExperimentConfig.from_dict({"train": {"epochs": -1}})
    Traceback (most recent call last):
    ...
    geomtl_core.errors.InputError: train.epochs=-1 is out of range: must be >= 1
    """
    values = flatten(cfg.to_dict())
    for key, allowed in RANGES.items():
        value = values[key]
        items = value if isinstance(value, list) else [value]
        for v in items:
            if isinstance(v, bool) or not isinstance(v, int | float) or not allowed.contains(v):
                each = "each element " if isinstance(value, list) else ""
                raise InputError(f"{key}={value!r} is out of range: {each}must be {allowed}")
    for key, options in CHOICES.items():
        if values[key] not in options:
            raise InputError(f"{key}={values[key]!r} is not one of {', '.join(options)}"
                             f"{closest(values[key], options)}")
    m = cfg.model
    if cfg.train.retrieval and not ((m.freeze_backbone or m.finetune_blocks > 0) and cfg.train.cache_features
                                    and m.backbone != "features"):
        raise InputError("train.retrieval=True needs a backbone frozen at least below its tuned blocks, on cached "
                         "features (model.freeze_backbone or model.finetune_blocks > 0, and train.cache_features): "
                         "the embeddings come from the cache; a backbone that learns whole has none")
    tau_min, tau_max = cfg.partition.tau_min, cfg.partition.tau_max
    if any(t < tau_min for t in tau_max):
        raise InputError(f"partition.tau_max={tau_max!r} is out of range: each element must be >= "
                         f"partition.tau_min ({tau_min})")
    return cfg


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A new nested dict: ``base`` with ``overrides`` applied key by key (dicts merged, other values replaced).

    >>> deep_merge({"train": {"epochs": 5, "lr": 0.01}}, {"train": {"epochs": 3}})
    {'train': {'epochs': 3, 'lr': 0.01}}
    """
    out = dict(base)
    for k, v in overrides.items():
        out[k] = deep_merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> ``{"a.b": value}`` (the keys ``--set`` uses)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        out |= flatten(v, key + ".") if isinstance(v, dict) else {key: v}
    return out


def differences(old: ExperimentConfig, new: ExperimentConfig) -> dict[str, tuple[Any, Any]]:
    """``{"train.epochs": (old, new)}`` for every key whose value differs."""
    a, b = flatten(old.to_dict()), flatten(new.to_dict())
    return {k: (a[k], b[k]) for k in a if a[k] != b[k]}


def merge(obj: Any, overrides: dict[str, Any], where: str = "config") -> Any:
    """A copy of dataclass ``obj`` with nested ``overrides`` applied; unknown keys raise."""
    known = {f.name: f for f in fields(obj)}
    changes = {}
    for key, value in overrides.items():
        if key not in known:
            raise InputError(f"unknown key {where}.{key}{_suggest(obj, key, where)} (valid keys in {where}: "
                             f"{', '.join(known)})")
        current = getattr(obj, key)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise InputError(f"{where}.{key} must be a mapping")
            changes[key] = merge(current, value, f"{where}.{key}")
        else:
            changes[key] = _coerce(value, current, f"{where}.{key}")
    return dataclasses.replace(obj, **changes)


def _coerce(value: Any, current: Any, where: str) -> Any:
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise InputError(f"{where} must be true/false, got {value!r}")
        return value
    if isinstance(current, int) and not isinstance(current, bool):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise InputError(f"{where} must be an integer, got {value!r}")
        return value
    if isinstance(current, float):
        if not isinstance(value, int | float):
            raise InputError(f"{where} must be a number, got {value!r}")
        return float(value)
    if isinstance(current, list) and not isinstance(value, list):
        raise InputError(f"{where} must be a list, got {value!r}")
    return value


def _suggest(obj: Any, key: str, where: str) -> str:
    """``"; did you mean ..."`` for an unknown ``key`` of ``obj``: a close sibling, else a close key anywhere
    in the config (``epochs`` at the top level -> ``train.epochs``)."""
    prefix = where.removeprefix("config").lstrip(".")
    prefix = f"{prefix}." if prefix else ""
    near = closest(key, [f.name for f in fields(obj)], prefix)
    if near:
        return near
    if not is_dataclass(obj) or prefix:
        return ""
    flat = flatten(asdict(obj))
    leaves = {k.rsplit(".", 1)[-1]: k for k in flat}
    match = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(leaves), n=1, cutoff=0.6)
    return f"; did you mean {leaves[match[0]]}?" if match else ""
