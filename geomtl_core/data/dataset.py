"""The input pipeline: a torch map-style ``Dataset`` over shards or folders, batched by a
``DataLoader`` that Keras' ``fit`` consumes directly on the torch backend.

Why a torch DataLoader rather than ``keras.utils.PyDataset``: worker processes, and a sampler
(``experiment_data.EpochSampler``) whose order depends only on (seed, epoch), so a resumed run
replays it, and which splits batches across data-parallel processes.
Bad images never stop an epoch. In training they are logged to a fault
file and replaced by the next good record (with that record's labels), so every batch keeps its
fixed shape. In evaluation nothing is replaced: a bad image becomes a blank placeholder with
sample weight 0, so Keras' validation metrics ignore it and :func:`geomtl_core.inference.evaluation.evaluate_split`
drops it, lists it and scores only the images actually read.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from geomtl_core.data.images import ImageDecodeError, TransformConfig, decode_image, eval_transform, to_tensor
from geomtl_core.data.images import train_transform as make_train_transform
from geomtl_core.data.shards import FolderSource, ShardIndex
from geomtl_core.errors import InputError
from geomtl_core.geo.partitioning import Partitioning

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

log = logging.getLogger(__name__)


@dataclass
class FaultLog:
    """Append-only file of skipped images (``epoch<TAB>id<TAB>reason``), safe across worker processes."""

    path: Path
    epoch: int = 0

    def record(self, img_id: str, reason: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.write(f"{self.epoch}\t{img_id}\t{reason.replace(chr(10), ' ')}\n")
        log.warning("skipped image %s: %s", img_id, reason)

    def entries(self, epoch: int | None = None) -> list[tuple[int, str, str]]:
        if not self.path.exists():
            return []
        rows = [line.rstrip("\n").split("\t", 2) for line in self.path.read_text().splitlines() if line]
        out = [(int(e), i, r) for e, i, r in rows]
        return [x for x in out if epoch is None or x[0] == epoch]


@dataclass
class LabelTable:
    """Per-image targets aligned with a source: coordinates, one class per partitioning, scene labels."""

    source_index: np.ndarray  # position of each usable sample in the image source
    img_id: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    report: dict[str, int] = field(default_factory=dict)


def build_labels(
    source_ids: np.ndarray,
    meta: pd.DataFrame,
    partitionings: Sequence[Partitioning],
    scene_columns: Sequence[str] = (),
) -> LabelTable:
    """Join image ids with metadata, assign every partitioning, and keep samples labelled everywhere.

    Nothing is dropped silently: ``report`` counts images without metadata, metadata
    without images, and images in no cell of some partitioning.
    """
    pos = pd.Series(np.arange(len(source_ids)), index=pd.Index(source_ids))
    if pos.index.has_duplicates:
        dup = pos.index[pos.index.duplicated()].unique()[:5].tolist()
        raise InputError(f"duplicate image ids in the image source, e.g. {dup}")
    m = meta[meta["img_id"].isin(pos.index)]
    report = {
        "images": len(source_ids),
        "metadata_rows": len(meta),
        "images_without_metadata": int(len(source_ids) - len(m)),
        "metadata_without_image": int(len(meta) - len(m)),
    }
    lat, lon = m["lat"].to_numpy(), m["lon"].to_numpy()
    targets: dict[str, np.ndarray] = {}
    ok = np.ones(len(m), bool)
    for part in partitionings:
        cls = part.assign(lat, lon, labels=m["img_id"].to_numpy())
        report[f"outside_{part.name}"] = int((cls < 0).sum())
        ok &= cls >= 0
        targets[part.name] = cls
    for col in scene_columns:
        if col not in m:
            raise InputError(f"scene label column {col!r} not in metadata (have {list(m.columns)})")
        targets[col] = m[col].to_numpy(np.int64)
    report["usable"] = int(ok.sum())
    return LabelTable(
        source_index=pos[m["img_id"]].to_numpy()[ok],
        img_id=m["img_id"].to_numpy()[ok],
        lat=lat[ok],
        lon=lon[ok],
        targets={k: v[ok] for k, v in targets.items()},
        report=report,
    )


class GeoImageDataset(Dataset):
    """``(image, {task: label})`` samples; images uint8, HWC (channels_last) unless told otherwise."""

    def __init__(
        self,
        source: ShardIndex | FolderSource,
        labels: LabelTable,
        transform_cfg: TransformConfig,
        train: bool,
        faults: FaultLog | None = None,
        five_crop: bool = False,
        channels_last: bool = True,
        max_retries: int = 16,
    ):
        self.source = source
        self.labels = labels
        self.cfg = transform_cfg
        self.train = train
        self.transform = make_train_transform(transform_cfg) if train else eval_transform(transform_cfg, five_crop)
        self.five_crop = five_crop and not train
        self.faults = faults
        self.channels_last = channels_last
        self.max_retries = max_retries

    def __len__(self) -> int:
        return len(self.labels.img_id)

    def load(self, k: int) -> torch.Tensor:
        """Decode and transform sample ``k``; raises ImageDecodeError on a bad image."""
        _img_id, data = self.source.read(int(self.labels.source_index[k]))
        min_side = round(self.cfg.size * self.cfg.resize_ratio)
        x = self.transform(to_tensor(decode_image(data, min_side=min_side)))
        return x.movedim(-3, -1).contiguous() if self.channels_last else x

    def placeholder(self) -> torch.Tensor:
        """A blank sample of the shape :meth:`load` returns (five crops when evaluating with them)."""
        size = self.cfg.size
        shape = (size, size, 3) if self.channels_last else (3, size, size)
        return torch.zeros(((5,) if self.five_crop else ()) + shape, dtype=torch.uint8)

    def __getitem__(self, k: int):
        if not self.train:  # evaluation: never substitute another image for this one
            try:
                x, w = self.load(k), 1.0
            except (ImageDecodeError, KeyError, OSError) as exc:
                if self.faults is not None:
                    self.faults.record(str(self.labels.img_id[k]), str(exc))
                x, w = self.placeholder(), 0.0
            return x, {name: torch.as_tensor(v[k]) for name, v in self.labels.targets.items()}, torch.tensor(w)
        n = len(self)
        for attempt in range(self.max_retries):
            j = (k + attempt) % n
            try:
                x = self.load(j)
                break
            except (ImageDecodeError, KeyError, OSError) as exc:
                if self.faults is not None:
                    self.faults.record(str(self.labels.img_id[j]), str(exc))
        else:
            raise RuntimeError(f"{self.max_retries} consecutive bad images from position {k}; see the fault log")
        y = {name: torch.as_tensor(v[j]) for name, v in self.labels.targets.items()}
        return x, y


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    sampler: Sampler | None = None,
    batch_sampler: Sampler | None = None,
    seed: int = 0,
    workers: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """The one DataLoader builder: seeded order and worker seeds (a resumed run replays both), forked
    workers, and ``drop_last`` for fixed-shape training batches; ``sampler`` overrides ``shuffle``, and
    ``batch_sampler`` (whole batches of indices) replaces ``batch_size``, ``sampler`` and ``drop_last``.

    Always seeded, so iterating never draws from torch's global RNG (model initialisation after it
    stays independent of how many loaders ran before).
    """
    g = torch.Generator()
    g.manual_seed(seed)
    batching = ({"batch_sampler": batch_sampler} if batch_sampler is not None else
                {"batch_size": batch_size, "shuffle": shuffle if sampler is None else False, "sampler": sampler,
                 "drop_last": drop_last})
    return DataLoader(
        dataset,
        **batching,
        generator=g,
        num_workers=workers,
        persistent_workers=False,
        worker_init_fn=_seed_worker if workers else None,
        collate_fn=getattr(dataset, "collate_fn", None),  # a dataset that batches itself (FeatureDataset)
        multiprocessing_context="fork" if workers and os.name == "posix" else None,
    )


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)  # noqa: NPY002 - seeds the legacy global RNG that third-party code may use
