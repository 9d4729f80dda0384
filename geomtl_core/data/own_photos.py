"""Your own geotagged photos in the MP-16 on-disk format (``geomtl data shards``): msgpack shards of JPEGs in
``OUT/{train,val,test}/`` and GeoEstimation metadata CSVs ``OUT/{train,val,test}.csv``, what ``geomtl train``
and ``geomtl evaluate --data`` read.

Coordinates come from a CSV/TSV read by :func:`~geomtl_core.data.truth.read_locations` (matched to the photos
by path, file name or stem, as ``geomtl predict --truth`` matches them) or from the photos' EXIF GPS. The split
is :func:`~geomtl_core.data.spatial_split.spatial_split` by whole grid cells, with training photos within
``buffer_km`` of a validation or test photo left out (a photo's content is not a footprint: a radius stands
in for it). Photos are decoded upright (EXIF orientation applied), shrunk so their short side is ``size`` px
(never enlarged) and re-encoded as JPEG without their EXIF (no GPS in the shards).

Nothing is lost silently: files that are not images or do not decode, photos without coordinates and photos
the buffer leaves out are listed in ``OUT/skipped.csv`` with the reason. Writing goes to a staging folder
``.OUT.partial`` beside ``OUT``, renamed to ``OUT`` when complete; the resized photos it holds are reused when
an interrupted run is started again. Pure PIL, numpy and pandas: no torch.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from geomtl_core.data.exif import read_exif
from geomtl_core.data.leakage import split_diagnostics
from geomtl_core.data.photo_files import looks_like_image
from geomtl_core.data.predictions import TruthTable
from geomtl_core.data.shards import write_shards
from geomtl_core.data.spatial_split import SPLIT_CODES, cell_uniform, spatial_split
from geomtl_core.data.truth import read_locations, to_floats
from geomtl_core.errors import InputError
from geomtl_core.files import atomic_path, swap_folder

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

SPLITS = ("train", "val", "test")
MARKER = "shards.json"
"""The summary a complete output folder holds: only such a folder is replaced by ``force``."""
SKIPPED = "skipped.csv"
CARRIED = ("AUTHOR",)
"""Columns of the locations file copied to the metadata CSVs, with every ``*_Label`` and ``Prob_*`` column."""


@dataclass(frozen=True)
class ShardOptions:
    """How photos become a dataset: image size, shard size, and the seeded spatial split."""

    size: int = 256  # short side in pixels after resizing (photos are never enlarged)
    per_shard: int = 10_000
    seed: int = 0
    buffer_km: float = 25.0  # training photos this close to a val/test photo are left out
    grid_deg: float = 1.0  # photos in one cell of this lat/lon grid share a split
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    quality: int = 90

    def __post_init__(self) -> None:
        checks = {"size": (self.size, 16, "at least 16 pixels"), "per_shard": (self.per_shard, 1, "at least 1"),
                  "seed": (self.seed, 0, "0 or more"), "buffer_km": (self.buffer_km, 0, "0 or more km"),
                  "quality": (self.quality, 1, "1 to 95")}
        for name, (value, low, what) in checks.items():
            if not value >= low:
                raise InputError(f"{name} must be {what}, got {value}")
        if not 0 < self.grid_deg <= 180:
            raise InputError(f"grid_deg must be in (0, 180] degrees, got {self.grid_deg}")
        if self.quality > 95:
            raise InputError(f"quality must be 1 to 95, got {self.quality}")


@dataclass
class Photo:
    """One photo with coordinates: its id (path relative to the photo folder), file, location, metadata row."""

    img_id: str
    path: Path
    lat: float
    lon: float
    row: int = -1  # its row in the locations table (-1: from EXIF)


def staging_path(out: str | Path) -> Path:
    """The staging folder of an output folder: ``.NAME.partial`` beside it (resumed by a later run)."""
    out = Path(out)
    return out.with_name(f".{out.name}.partial")


def check_out(out: str | Path, force: bool = False) -> Path:
    """``out`` as a Path if the shards may be written there (absent, empty, or a complete earlier output with
    ``force``); else an error saying why, before anything is read or written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the shards")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise InputError(f"--out {out} is a folder that geomtl data shards did not write (no {MARKER}); "
                             "choose a new --out")
        if not force:
            raise FileExistsError(f"{out} already holds shards ({MARKER}); pass --force to replace them, or "
                                  "choose another --out")
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: folder {out.parent} does not exist; create it first or write elsewhere")
    return out


def find_files(folder: Path, exclude: tuple[Path, ...] = ()) -> list[Path]:
    """Every file under ``folder`` (sorted), hidden files and folders and anything under ``exclude`` left out."""
    exclude = tuple(p.resolve() for p in exclude)
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        full = p.resolve()
        if any(full == e or e in full.parents for e in exclude):
            continue
        out.append(p)
    return out


def row_matcher(table: pd.DataFrame) -> TruthTable:
    """A :class:`TruthTable` over the locations table's keys whose "coordinates" are the row numbers, so that
    ``get(path)`` gives a photo's row (its labels come with it) by the matching ``geomtl predict --truth`` uses."""
    keys, rows = [], []
    for k, row_keys in enumerate(table["keys"]):
        keys += row_keys
        rows += [float(k)] * len(row_keys)
    return TruthTable(table.attrs.get("source", ""), keys, np.array(rows), np.zeros(len(rows)), len(table))


def _open_problem(data: bytes) -> str | None:
    """Why bytes that carry no EXIF position are no readable image, or None if their header opens."""
    try:
        with Image.open(io.BytesIO(data)):
            return None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return f"not a decodable image ({exc})"


def locate(folder: Path, files: list[Path], table: pd.DataFrame | None) -> tuple[list[Photo], list[tuple[str, str]]]:
    """(photos with coordinates, [(path, reason)] of the files left out): coordinates from ``table``
    (:func:`read_locations`), or from EXIF GPS when it is None; files that are no image are left out first."""
    photos, skipped = [], []
    match = row_matcher(table) if table is not None else None
    for path in files:
        rel = path.relative_to(folder).as_posix()
        if not looks_like_image(path):
            skipped.append((rel, "not an image (no image file ending or format)"))
            continue
        if match is not None:
            hit = match.get(rel)
            if hit is None:
                skipped.append((rel, f"no coordinates: not listed in {Path(table.attrs['source']).name} (or its "
                                      "row has no latitude/longitude, or several rows name it)"))
                continue
            k = int(hit[0])
            photos.append(Photo(rel, path, float(table["lat"].iat[k]), float(table["lon"].iat[k]), k))
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            skipped.append((rel, f"cannot be read ({exc.strerror or exc})"))
            continue
        info = read_exif(data)
        if info.gps is None:
            why = _open_problem(data) or "no coordinates: " + (info.warnings[-1] if info.warnings else
                                                             "no EXIF GPS position")
            skipped.append((rel, why))
            continue
        photos.append(Photo(rel, path, *info.gps))
    return photos, skipped


def resize_photo(data: bytes, size: int, quality: int = 90) -> bytes:
    """JPEG bytes of a photo turned upright (EXIF orientation), in RGB, shrunk so its short side is ``size`` px
    (smaller photos keep theirs), without EXIF. JPEGs are decoded at a reduced DCT scale that still covers
    ``size`` (fast on camera photos). Raises OSError/ValueError for data that does not decode."""
    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (size, size))  # JPEG only: the smallest scale >= size on both sides
        img = ImageOps.exif_transpose(im).convert("RGB")
    w, h = img.size
    if min(w, h) > size:
        scale = size / min(w, h)
        img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _cache_key(photo: Photo, opts: ShardOptions) -> str:
    """A resized photo's name in the staging folder: its path, size, modification time and the settings."""
    st = photo.path.stat()
    text = f"{photo.img_id}\0{st.st_size}\0{st.st_mtime_ns}\0{opts.size}\0{opts.quality}"
    return hashlib.sha1(text.encode()).hexdigest() + ".jpg"


def resize_all(photos: list[Photo], cache: Path, opts: ShardOptions, progress: bool = False
               ) -> tuple[list[Photo], dict[str, Path], list[tuple[str, str]], int]:
    """(photos that decode, id -> resized file, [(path, reason)] of those that do not, how many were reused)."""
    from tqdm.auto import tqdm

    cache.mkdir(parents=True, exist_ok=True)
    ok, files, failed, reused = [], {}, [], 0
    for photo in tqdm(photos, desc="resize", unit="photo", disable=not progress):
        try:
            target = cache / _cache_key(photo, opts)
            data = None if target.is_file() else photo.path.read_bytes()
        except OSError as exc:
            failed.append((photo.img_id, f"cannot be read ({exc.strerror or exc})"))
            continue
        if data is None:
            reused += 1
        else:
            try:
                data = resize_photo(data, opts.size, opts.quality)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                failed.append((photo.img_id, f"not a decodable image ({exc})"))
                continue
            with atomic_path(target) as tmp:
                tmp.write_bytes(data)
        ok.append(photo)
        files[photo.img_id] = target
    return ok, files, failed, reused


def split_fractions(cells: np.ndarray, fractions: tuple[float, float, float]) -> tuple[float, float, float]:
    """``fractions``, or where they give a split no cell while there are enough cells, cut points moved between
    the cells' hash numbers (:func:`cell_uniform`) so that train, then val, then test get at least one cell.

    >>> split_fractions(np.array([0.1, 0.3, 0.5]), (0.8, 0.1, 0.1))
    (0.2, 0.2, 0.6)
    """
    u = np.unique(cells)
    k = len(u)
    cuts = np.cumsum(fractions)[:2]
    n_test, n_val = int((u >= cuts[1]).sum()), int(((u >= cuts[0]) & (u < cuts[1])).sum())
    if k - n_test - n_val >= 1 and (n_val or k < 2) and (n_test or k < 3):
        return fractions
    n_val, n_test = min(max(n_val, 1), k - 1), min(max(n_test, 1), max(k - 2, 0))
    while k - n_val - n_test < 1:  # train first: take back from the larger held-out split
        if n_test >= n_val:
            n_test -= 1
        else:
            n_val -= 1
    c2 = (u[k - n_test - 1] + u[k - n_test]) / 2 if n_test else 1.0
    c1 = (u[k - n_test - n_val - 1] + u[k - n_test - n_val]) / 2 if n_val else c2
    return (float(c1), float(c2 - c1), float(1 - c2))


def split_photos(lat: np.ndarray, lon: np.ndarray, opts: ShardOptions) -> tuple[np.ndarray, np.ndarray]:
    """(split code per photo: 0 train, 1 val, 2 test, -1 left out by the buffer; the training-cell mask before
    the buffer), by :func:`spatial_split` with no per-block cap (a user's photos are their own distribution)."""
    fractions = split_fractions(cell_uniform(lat, lon, opts.seed, opts.grid_deg), opts.fractions)
    cells = spatial_split(lat, lon, opts.seed, fractions, opts.grid_deg, 0.0, 1.0)
    return spatial_split(lat, lon, opts.seed, fractions, opts.grid_deg, opts.buffer_km, 1.0), cells == 0


def metadata_table(photos: list[Photo], table: pd.DataFrame | None) -> tuple[pd.DataFrame, dict[str, str]]:
    """GeoEstimation's layout ``IMG_ID,AUTHOR,LAT,LON`` plus the locations file's ``*_Label`` and ``Prob_*``
    columns; (table, {column left out: why}) — a label column with a missing or non-integer value is left out."""
    out = pd.DataFrame({"IMG_ID": [p.img_id for p in photos], "AUTHOR": "unknown",
                        "LAT": [p.lat for p in photos], "LON": [p.lon for p in photos]})
    dropped: dict[str, str] = {}
    if table is None:
        return out, dropped
    rows = np.array([p.row for p in photos], dtype=np.int64)
    for col in table.columns:
        if col not in CARRIED and not col.endswith("_Label") and not col.startswith("Prob_"):
            continue
        values = table[col].to_numpy()[rows]
        if col == "AUTHOR":
            out["AUTHOR"] = [v if v.strip() else "unknown" for v in values]
            continue
        numbers = to_floats(list(values))
        if col.endswith("_Label") and (np.isnan(numbers) | (numbers != np.round(numbers))).any():
            dropped[col] = "missing or non-integer values"
            continue
        out[col] = numbers.astype(np.int64) if col.endswith("_Label") else numbers
    return out, dropped


def write_skipped(path: Path, skipped: list[tuple[str, str]]) -> None:
    """``skipped.csv``: one row per file left out, ``path,reason`` (a header alone when none)."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "reason"])
        w.writerows(sorted(skipped))


def _kind(reason: str) -> str:
    return reason.split(" (")[0].split(":")[0]


def build_shards(photos: str | Path, out: str | Path, meta: str | Path | None = None, exif: bool = False,
                 options: ShardOptions = ShardOptions(), force: bool = False, progress: bool = False) -> dict:
    """Write a folder of geotagged photos as ``OUT/{train,val,test}/shard_*.msg``, ``OUT/{split}.csv``,
    ``OUT/skipped.csv`` and ``OUT/shards.json`` (returned): coordinates from ``meta`` or, with ``exif``, from the
    photos' EXIF GPS. Bad input raises :class:`InputError` (an existing output: ``FileExistsError`` unless
    ``force``) before anything is written; an empty val or test split is reported, an empty train an error."""
    from filelock import FileLock, Timeout

    folder = Path(photos)
    if not folder.is_dir():
        raise InputError(f"photo folder {folder} does not exist or is not a folder")
    if (meta is None) == (not exif):
        raise InputError("give the photos' coordinates one way: meta (a CSV/TSV of file name, lat, lon) or exif "
                         "(their EXIF GPS)")
    out = check_out(out, force)
    table = read_locations(meta) if meta is not None else None
    staging = staging_path(out)
    files = find_files(folder, exclude=(out, staging) + ((Path(meta),) if meta is not None else ()))
    located, skipped = locate(folder, files, table)
    if not located:
        raise InputError(f"no photo in {folder} has coordinates ({len(files)} files; "
                         + "; ".join(f"{r}: {n}" for r, n in Counter(_kind(r) for _, r in skipped).items())
                         + ")" + (f"; rows of {meta} name photos by file name or path" if meta else ""))
    try:
        lock = FileLock(out.with_name(f".{out.name}.lock"), timeout=0)
        lock.acquire()
    except Timeout:
        raise InputError(f"another geomtl data shards is writing {out}; wait for it or choose another --out") \
            from None
    try:
        check_out(out, force)  # again, under the lock: another run may have finished it meanwhile
        return _write(folder, out, staging, located, skipped, table, meta, options, progress, len(files))
    finally:
        lock.release()


def _write(folder: Path, out: Path, staging: Path, located: list[Photo], skipped: list[tuple[str, str]],
           table: pd.DataFrame | None, meta: str | Path | None, opts: ShardOptions, progress: bool,
           n_files: int) -> dict:
    """Resize into the staging folder (reusing what an interrupted run left), split, write, rename to ``out``."""
    if staging.is_dir():  # an interrupted run's shards and tables go; its resized photos stay
        for p in staging.iterdir():
            if p.name != "resized":
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    decoded, files, failed, reused = resize_all(located, staging / "resized", opts, progress)
    skipped = skipped + failed
    if not decoded:
        raise InputError(f"none of the {len(located)} photos with coordinates in {folder} decodes (e.g. "
                         f"{failed[0][0]}: {failed[0][1]})")
    lat = np.array([p.lat for p in decoded])
    lon = np.array([p.lon for p in decoded])
    split, eligible = split_photos(lat, lon, opts)
    counts = {s: int((split == SPLIT_CODES[s]).sum()) for s in SPLITS}
    if not counts["train"]:
        raise InputError(f"no training photo is left: all {int(eligible.sum())} in training cells lie within "
                         f"{opts.buffer_km:g} km of a val/test photo; lower --buffer-km (0 keeps them) "
                         f"(the resized photos stay in {staging} for the next run)")
    skipped += [(p.img_id, f"left out by the split: within {opts.buffer_km:g} km of a val/test photo (--buffer-km)")
                for p, s in zip(decoded, split, strict=True) if s < 0]
    meta_table, dropped = metadata_table(decoded, table)
    shards = {}
    for name in SPLITS:
        keep = np.flatnonzero(split == SPLIT_CODES[name])
        if not len(keep):
            continue
        part = meta_table.iloc[keep].sort_values("IMG_ID")
        part.to_csv(staging / f"{name}.csv", index=False)
        records = ((i, files[i].read_bytes()) for i in part["IMG_ID"])
        shards[name] = len(write_shards(records, staging / name, opts.per_shard))
    write_skipped(staging / SKIPPED, skipped)
    matched = {p.row for p in located}
    without_photo = [] if table is None else \
        [str(k) for r, k in enumerate(table["img_id"]) if r not in matched]
    cells = len(np.unique(cell_uniform(lat, lon, opts.seed, opts.grid_deg)))
    info = {
        "dataset": "geomtl data shards: your own photos (book/your_photos.md)",
        "photos": str(folder), "coordinates": f"file {meta}" if meta is not None else "EXIF GPS",
        "options": asdict(opts), "n": sum(counts.values()), "counts": counts, "shards": shards,
        "empty_splits": [s for s in SPLITS if not counts[s]], "cells": cells, "files": n_files,
        "with_coordinates": len(located), "decoded": len(decoded), "resized_reused": reused,
        "skipped": len(skipped), "skipped_by_reason": dict(Counter(_kind(r) for _, r in skipped)),
        "leakage": split_diagnostics(lat, lon, split, eligible),
    }
    if table is not None:
        info["locations"] = {"file": str(meta), "layout": table.attrs["layout"], "rows": len(table),
                             "rows_without_coordinates": table.attrs["skipped"],
                             "rows_without_photo": len(without_photo), "ids_without_photo": without_photo[:50],
                             "columns_left_out": dropped}
    (staging / MARKER).write_text(json.dumps(info, indent=2))
    shutil.rmtree(staging / "resized")
    swap_folder(staging, out)
    return info
