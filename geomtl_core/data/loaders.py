"""Turn a config's data section into partitionings, label tables and DataLoaders for each split."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from geomtl_core.config import ExperimentConfig
from geomtl_core.data.dataset import FaultLog, GeoImageDataset, LabelTable, build_labels, make_loader
from geomtl_core.data.images import TransformConfig
from geomtl_core.data.metadata import read_metadata
from geomtl_core.data.shards import open_source
from geomtl_core.errors import InputError
from geomtl_core.geo.partitioning import Partitioning, build_partitionings, read_cells_csv

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Sampler

KNOWN_SCENE_CLASSES = {"s3": 3, "s16": 16, "s365": 365}


def split_paths(cfg: ExperimentConfig, split: str) -> tuple[Path, Path]:
    """(images, metadata CSV) of a split: ``root/<name>/`` and ``root/<name>.csv`` by default; with
    ``data.images`` every split reads its images from ``root/<images>/`` (e.g. a cross-validation fold)."""
    d = cfg.data
    name = getattr(d, split)
    p = Path(name)
    if p.suffix == ".csv":  # explicit metadata file; images in a folder of the same stem
        images, meta = p.with_suffix(""), p
    else:
        root = Path(d.root)
        images, meta = root / name, root / f"{name}.csv"
    return (Path(d.root) / d.images if d.images else images), meta


def load_meta(cfg: ExperimentConfig, split: str) -> pd.DataFrame:
    _, meta = split_paths(cfg, split)
    if not meta.exists():
        raise FileNotFoundError(f"metadata for split {split!r} not found at {meta} (data.root={cfg.data.root!r})")
    return read_metadata(meta)


def subsample(meta: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """Seeded random share of the training rows (for the training-set-size ablation)."""
    if not 0 < fraction <= 1:
        raise InputError(f"data.train_fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return meta
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(meta), size=max(1, round(fraction * len(meta))), replace=False))
    return meta.iloc[keep].reset_index(drop=True)


def load_tables(cfg: ExperimentConfig, splits: tuple[str, ...] = ("train", "val")) -> dict[str, pd.DataFrame]:
    """Metadata of ``splits`` with the configured auxiliary-label control applied (computed with the
    training split, which is read whenever a control needs it)."""
    from geomtl_core.data.aux_labels import control_labels

    need = splits if cfg.data.aux_control == "none" or "train" in splits else ("train", *splits)
    metas = control_labels({s: load_meta(cfg, s) for s in need}, cfg.data.scene_tasks, cfg.data.aux_control,
                           cfg.train.seed)
    return {s: metas[s] for s in splits}


def training_rows(cfg: ExperimentConfig, train: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray | None]:
    """The training rows a run reads (its scene subset, then its seeded share) and, with
    ``data.scene_on_all``, the mask of those that keep their geo labels (the others train the scene task only)."""
    d = cfg.data
    if d.scene_on_all and not cfg.partition.from_full_train:  # cells from unlabelled images would leak location
        raise InputError("data.scene_on_all needs partition.from_full_train: the cells must not be built from "
                         "the images whose geo labels the run leaves out")
    if d.subset_task:
        if d.subset_task not in train:
            raise InputError(f"data.subset_task {d.subset_task!r} is not a column of the training metadata")
        train = train[train[d.subset_task] == d.subset_class].reset_index(drop=True)
        if train.empty:
            raise InputError(f"no training image has {d.subset_task} == {d.subset_class}")
    share = subsample(train, d.train_fraction, cfg.train.seed)
    if d.scene_on_all and d.train_fraction < 1:
        return train, train["img_id"].isin(share["img_id"]).to_numpy()
    return share, None


def mask_geo_labels(labels: LabelTable, parts: list[Partitioning], keep_ids: np.ndarray) -> np.ndarray:
    """Set the geo targets of images not in ``keep_ids`` to -1 (masked out of the loss); returns the mask of
    the rows that keep them."""
    keep = np.isin(labels.img_id, keep_ids)
    for p in parts:
        labels.targets[p.name] = np.where(keep, labels.targets[p.name], -1)
    return keep


def make_partitionings(cfg: ExperimentConfig, train_meta: pd.DataFrame) -> list[Partitioning]:
    """Read the configured cells files, or build them from the training coordinates (coarse -> fine)."""
    p = cfg.partition
    if p.cells_files:
        parts = [read_cells_csv(f) for f in p.cells_files]
    else:
        parts = build_partitionings(train_meta["lat"], train_meta["lon"], p.tau_max, p.tau_min)
    for part in parts:
        if len(part) == 0:
            raise InputError(f"partitioning {part.name} has no cells: lower tau_min or add training data")
    return sorted(parts, key=len)


def scene_classes(cfg: ExperimentConfig, metas: list[pd.DataFrame]) -> dict[str, int]:
    """Number of classes of each scene task (known sizes, else max label + 1 over all splits)."""
    out = {}
    for task in cfg.data.scene_tasks:
        present = [m[task] for m in metas if task in m]
        if not present:
            raise InputError(f"scene task {task!r} is not a column of the metadata")
        top = int(max(s.max() for s in present)) + 1
        out[task] = max(KNOWN_SCENE_CLASSES.get(task, 0), top)
    return out


class EpochSampler(Sampler[int]):
    """A permutation that depends only on (seed, epoch), so a resumed run replays the same order.

    ``total`` samples per epoch (default ``n``): for equal optimiser steps whatever the training-set size.
    With ``world > 1`` (data-parallel training) rank ``r`` takes positions ``r, r + world, …`` of the
    permutation truncated to whole global batches (``batch * world``): the ranks' shares are disjoint,
    together they are exactly what one process with a ``world`` times larger batch would read.
    """

    def __init__(self, n: int, seed: int, shuffle: bool = True, rank: int = 0, world: int = 1, batch: int = 1,
                 total: int = 0):
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0
        self.rank, self.world, self.batch = rank, world, batch
        self.total = total or n  # samples per epoch: whole permutations concatenated, then cut to ``total``

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> list[int]:
        perm: list[int] = []
        for rep in range(-(-self.total // self.n)):  # a small subset is read several times per epoch
            if self.shuffle:
                g = torch.Generator()
                g.manual_seed(self.seed * 100_003 + self.epoch + 7_919 * rep)
                perm += torch.randperm(self.n, generator=g).tolist()
            else:
                perm += list(range(self.n))
        perm = perm[: self.total]
        if self.world == 1:
            return perm
        usable = (self.total // (self.batch * self.world)) * self.batch * self.world
        return perm[:usable][self.rank :: self.world]

    def __iter__(self):
        return iter(self.indices())

    def __len__(self) -> int:
        if self.world == 1:
            return self.total
        return (self.total // (self.batch * self.world)) * self.batch


class PairedBatchSampler(Sampler[list[int]]):
    """Batches of a run whose auxiliary labels cover every training image while its geo labels stay on a share.

    Batch ``k`` is the ``batch`` geo-labelled images that the single-task run on that share reads at step ``k``
    (its :class:`EpochSampler` order, same seed and epoch, mapped to this run's rows), followed by ``batch``
    images that carry only the auxiliary labels (a second seeded permutation). The geo loss (a masked mean)
    thus sees exactly the single-task arm's images at every step: the auxiliary labels come beside the geo
    supervision instead of diluting it, and the comparison of the two arms is paired batch by batch.
    """

    EXTRA_STREAM = 1_000_003  # seed offset of the auxiliary-only images' permutation (never a run's own seed)

    def __init__(self, geo_mask: np.ndarray, seed: int, batch: int, total: int = 0):
        self.geo = np.flatnonzero(geo_mask)
        self.extra = np.flatnonzero(~np.asarray(geo_mask, bool))
        if len(self.geo) == 0:
            raise InputError("no training image keeps its geo labels: raise data.train_fraction")
        self.batch, self.seed = batch, seed
        self.total = total or len(self.geo)
        self.geo_order = EpochSampler(len(self.geo), seed, total=self.total)
        # the single-task run drops its last partial batch whenever it has a whole one (make_loader's drop_last)
        self.n_batches = self.total // batch if len(self.geo) >= batch else -(-self.total // batch)
        self.extra_order = EpochSampler(max(len(self.extra), 1), seed + self.EXTRA_STREAM, total=self.n_batches * batch)

    def set_epoch(self, epoch: int) -> None:
        self.geo_order.set_epoch(epoch)
        self.extra_order.set_epoch(epoch)

    def __iter__(self):
        geo = self.geo[self.geo_order.indices()]
        extra = self.extra[self.extra_order.indices()] if len(self.extra) else np.zeros(0, np.int64)
        b = self.batch
        for k in range(self.n_batches):
            yield [*geo[k * b:(k + 1) * b].tolist(), *extra[k * b:(k + 1) * b].tolist()]

    def __len__(self) -> int:
        return self.n_batches


def loader_workers(cfg: ExperimentConfig) -> int:
    """Worker processes of a training loader: none for decoded images (their batches are tensor ops in this
    process, drawn from one generator in order), ``data.workers`` for the per-sample pipeline."""
    return 0 if cfg.data.decode_once else cfg.data.workers


@dataclass
class SplitData:
    """One split: its labels and a ready DataLoader."""

    labels: LabelTable
    dataset: GeoImageDataset
    loader: DataLoader


def split_loader(
    cfg: ExperimentConfig,
    split: str,
    meta: pd.DataFrame,
    parts: list[Partitioning],
    train: bool,
    faults: FaultLog | None = None,
) -> SplitData:
    """Labels + dataset + loader of a split (train: augmentation, epoch-seeded shuffling, full batches)."""
    images, _ = split_paths(cfg, split)
    source = open_source(images)
    labels = build_labels(source.ids, meta, parts if train else [], cfg.data.scene_tasks)
    if not train:  # evaluation keeps images outside every cell: label -1, masked out of that head's loss/accuracy
        labels.targets.update({p.name: p.assign(labels.lat, labels.lon) for p in parts})
    tfm = TransformConfig(size=cfg.data.image_size, flip=cfg.data.flip, jitter=cfg.data.jitter)
    if train and cfg.data.decode_once:
        from geomtl_core.data.decoded import DecodedTrainSet, decode_all

        images = decode_all(source, labels, tfm.size, round(tfm.size * tfm.resize_ratio), faults)
        ds = DecodedTrainSet(images, labels, tfm, cfg.train.seed, source)
    else:
        ds = GeoImageDataset(source, labels, tfm, train=train,
                             faults=faults,
                             five_crop=cfg.data.five_crop and not train)
    if len(ds) == 0:
        raise InputError(f"split {split!r} has no usable images (report: {labels.report})")
    if not train:
        return SplitData(labels, ds, make_loader(ds, cfg.train.batch_size, seed=cfg.train.seed,
                                                 workers=cfg.data.workers))
    from geomtl_core.distributed import rank, world_size

    sampler = EpochSampler(len(ds), cfg.train.seed, rank=rank(), world=world_size(), batch=cfg.train.batch_size,
                           total=cfg.train.samples_per_epoch)
    loader = make_loader(ds, cfg.train.batch_size, sampler=sampler, seed=cfg.train.seed, workers=loader_workers(cfg),
                         drop_last=len(ds) >= cfg.train.batch_size)
    return SplitData(labels, ds, loader)


def training_split(cfg: ExperimentConfig, train_meta: pd.DataFrame, geo_rows: np.ndarray | None,
                   parts: list[Partitioning], faults: FaultLog | None = None) -> tuple[SplitData, int]:
    """The training split a run reads and how many of its images keep geo labels: with ``geo_rows`` (from
    :func:`training_rows`) the others lose them and the loader pairs batches (:class:`PairedBatchSampler`)."""
    split = split_loader(cfg, "train", train_meta, parts, train=True, faults=faults)
    if geo_rows is None:
        return split, len(split.dataset)
    from geomtl_core.distributed import world_size

    if world_size() > 1:
        raise InputError("data.scene_on_all with a share < 1 trains in one process only (its paired batches "
                         "are not split across data-parallel ranks)")
    keep = mask_geo_labels(split.labels, parts, train_meta["img_id"].to_numpy()[geo_rows])
    batches = PairedBatchSampler(keep, cfg.train.seed, cfg.train.batch_size, cfg.train.samples_per_epoch)
    loader = make_loader(split.dataset, cfg.train.batch_size, batch_sampler=batches, seed=cfg.train.seed,
                         workers=loader_workers(cfg))
    return replace(split, loader=loader), int(keep.sum())
