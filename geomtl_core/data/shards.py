"""MP-16 image storage: msgpack shards of ``{"id": str, "image": JPEG bytes}`` (GeoEstimation's
layout) and folders of image files, with an offset index for random access."""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from geomtl_core.errors import InputError
from geomtl_core.files import atomic_path

import msgpack
import numpy as np

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


class ShardError(InputError):
    """A shard file that cannot be parsed at all; names the file."""


def write_shards(
    records: Iterable[tuple[str, bytes]], out_dir: str | Path, per_shard: int = 10_000, prefix: str = "shard"
) -> list[Path]:
    """Write ``(id, jpeg_bytes)`` records to ``shard_00000.msg``… with ``per_shard`` records each."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    fh = None
    count = 0
    for img_id, data in records:
        if fh is None or count == per_shard:
            if fh is not None:
                fh.close()
            paths.append(out / f"{prefix}_{len(paths):05d}.msg")
            fh = paths[-1].open("wb")
            count = 0
        fh.write(msgpack.packb({"id": str(img_id), "image": bytes(data)}, use_bin_type=True))
        count += 1
    if fh is not None:
        fh.close()
    return paths


def iter_shard(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(offset, record)`` for every record of one shard.

    A file that is not msgpack at all raises :class:`ShardError`; a truncated tail
    (an interrupted copy) is logged with the number of bytes lost, and the records
    before it are kept.
    """
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as fh:
        unpacker = msgpack.Unpacker(fh, raw=False, max_buffer_size=1 << 30)
        offset = 0
        n = 0
        try:
            for rec in unpacker:
                yield offset, rec
                offset = unpacker.tell()
                n += 1
        except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError) as exc:
            raise ShardError(f"{path}: not a msgpack shard (failed after {n} records at byte {offset}): {exc}") from exc
        if offset < size:
            if n == 0:
                raise ShardError(f"{path}: no complete msgpack record in {size} bytes")
            log.warning("%s: truncated shard, last %d bytes (one partial record) ignored after %d records",
                        path, size - offset, n)


@dataclass
class ShardIndex:
    """Where each image lives: shard file number and byte offset, by position and by id."""

    files: list[Path]
    file_idx: np.ndarray
    offsets: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def read(self, k: int) -> tuple[str, bytes]:
        """Random access to record ``k``: one seek + one unpack on a per-process open handle."""
        fi = int(self.file_idx[k])
        handles = self._handles()
        if fi not in handles:
            handles[fi] = self.files[fi].open("rb")
        fh = handles[fi]
        fh.seek(int(self.offsets[k]))
        end = int(self.offsets[k + 1]) if k + 1 < len(self.offsets) and self.file_idx[k + 1] == fi else None
        data = fh.read(end - int(self.offsets[k])) if end is not None else fh.read()
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=1 << 30)
        unpacker.feed(data)
        rec = next(unpacker)
        return str(rec["id"]), rec["image"]

    def _handles(self) -> dict[int, BinaryIO]:
        """Open files of this process (forked workers open their own)."""
        pid = os.getpid()
        if getattr(self, "_pid", None) != pid:
            self._pid = pid
            self._open: dict[int, BinaryIO] = {}
        return self._open

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_open", None)
        state.pop("_pid", None)
        return state


def shard_files(root: str | Path) -> list[Path]:
    """The ``*.msg`` shards under ``root`` (or ``root`` itself), sorted."""
    root = Path(root)
    files = [root] if root.is_file() else sorted(root.glob("*.msg"))
    if not files:
        raise FileNotFoundError(f"no msgpack shards (*.msg) in {root}")
    return files


def index_shards(root: str | Path, cache: bool = True) -> ShardIndex:
    """Scan shards once (cached in ``.geomtl_index.npz`` beside them) to index every record.

    Records that are not a map with ``id`` and ``image`` are skipped and logged.
    """
    files = shard_files(root)
    cache_path = files[0].parent / ".geomtl_index.npz"
    stamp = np.array([[f.stat().st_size, f.stat().st_mtime_ns] for f in files], dtype=np.int64)
    if cache and cache_path.exists():
        try:
            z = np.load(cache_path, allow_pickle=False)
            if z["names"].tolist() == [f.name for f in files] and np.array_equal(z["stamp"], stamp):
                return ShardIndex(files, z["file_idx"], z["offsets"], z["ids"])
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):  # unreadable: scanned again
            pass
    file_idx, offsets, ids = [], [], []
    for fi, f in enumerate(files):
        for off, rec in iter_shard(f):
            if not isinstance(rec, dict) or "id" not in rec or not isinstance(rec.get("image"), bytes | bytearray):
                log.warning("%s: record at byte %d is not {'id', 'image'}; skipped", f, off)
                continue
            file_idx.append(fi)
            offsets.append(off)
            ids.append(str(rec["id"]))
    index = ShardIndex(files, np.array(file_idx, np.int32), np.array(offsets, np.int64), np.array(ids, dtype=str))
    if cache:
        try:  # written whole or not at all: a process killed mid-write leaves no half index for the next one
            with atomic_path(cache_path) as tmp:
                np.savez(tmp, names=np.array([f.name for f in files]), stamp=stamp, file_idx=index.file_idx,
                         offsets=index.offsets, ids=index.ids)
        except OSError:
            log.info("could not write index cache %s (read-only folder?)", cache_path)
    return index


@dataclass
class FolderSource:
    """Images as files in a folder tree; the id is the path relative to the root."""

    root: Path
    paths: list[Path]

    @classmethod
    def scan(cls, root: str | Path) -> FolderSource:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder not found: {root}")
        paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        return cls(root, paths)

    @property
    def ids(self) -> np.ndarray:
        return np.array([p.relative_to(self.root).as_posix() for p in self.paths], dtype=str)

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, k: int) -> tuple[str, bytes]:
        p = self.paths[k]
        return p.relative_to(self.root).as_posix(), p.read_bytes()


def open_source(root: str | Path) -> ShardIndex | FolderSource:
    """Shards if ``root`` holds ``*.msg`` files (or is one), else a folder of images."""
    root = Path(root)
    if root.is_file() or any(root.glob("*.msg")):
        return index_shards(root)
    return FolderSource.scan(root)
