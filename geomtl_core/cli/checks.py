"""Checks of the command line's input that run before anything heavy (torch, keras, a model) is imported.

Every command calls these on its files, folders and options first, so a mistake costs a fraction of a second
and ends with one line on stderr and exit status 2, nothing written (see :func:`geomtl_core.cli.main`). They
read at most a file's first bytes, or a bundle's ``labels.json``; this module imports no numerical library.
"""

from __future__ import annotations

import codecs
import json
import os
import sys
from pathlib import Path
from typing import TextIO

from geomtl_core.data.photo_files import IMAGE_SUFFIXES, MORE_MAGIC, looks_like_image_bytes
from geomtl_core.errors import InputError
from geomtl_core.files import MODEL_FILE, model_file

BUNDLE_FILES = ("labels.json", "config.yaml")
"""What every bundle folder holds besides its model (:func:`geomtl_core.files.model_file`)."""
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTOCOLS = range(2, 6)


def _head(path: Path, n: int = 16) -> bytes:
    with path.open("rb") as fh:
        return fh.read(n)


def require_file(path: str | os.PathLike, what: str, hint: str) -> Path:
    """``path`` as a Path if it is a readable, non-empty file; else an :class:`InputError` naming it and ``what``
    to do (``hint``)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} {path} does not exist; {hint}")
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder, not a file; {hint}")
    try:
        head = _head(path)
    except OSError as exc:
        raise InputError(f"{what} {path} cannot be read ({exc.strerror or exc}); {hint}") from exc
    if not head:
        raise InputError(f"{what} {path} is empty (0 bytes); {hint}")
    return path


def require_text_file(path: str | os.PathLike, what: str, hint: str) -> Path:
    """:func:`require_file`, and its first 4 KiB are UTF-8 text (a photo or a checkpoint given as a CSV is
    refused before it is parsed)."""
    path = require_file(path, what, hint)
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(_head(path, 4096), final=False)
    except UnicodeDecodeError:
        text = "\0"
    if "\0" in text:
        raise InputError(f"{what} {path} is not a text file; {hint}")
    return path


def require_folder(path: str | os.PathLike, what: str, hint: str) -> Path:
    """``path`` as a Path if it is a folder; else an :class:`InputError` naming it and what to do."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} {path} does not exist; {hint}")
    if not path.is_dir():
        raise InputError(f"{what} {path} is a file, not a folder; {hint}")
    return path


def require_output_file(path: str | os.PathLike, what: str) -> Path:
    """An output file's path whose folder exists (nothing is created here): else an error saying what to do."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder; give a file name, e.g. {path / 'predictions.csv'}")
    if not path.parent.is_dir():
        raise InputError(f"{what} {path}: folder {path.parent} does not exist; create it first or write elsewhere")
    return path


def check_bundle(path: str | os.PathLike) -> dict:
    """A model bundle folder's ``labels.json`` (read as JSON, nothing else loaded), after checking that the folder
    holds what :func:`geomtl_core.models.bundle.load_bundle` needs."""
    folder = Path(path)
    if not folder.exists():
        raise InputError(f"model bundle folder {path} does not exist; give a folder written by `geomtl train` or "
                         "`geomtl import`")
    if not folder.is_dir():
        raise InputError(f"{path} is a file, not a model bundle folder (from geomtl train or geomtl import)")
    missing = [f for f in BUNDLE_FILES if not (folder / f).is_file()] + ([MODEL_FILE] if model_file(folder) is None
                                                                         else [])
    if missing:
        raise InputError(f"{path} is not a complete model bundle: {', '.join(missing)} missing (a bundle is the "
                         "folder `geomtl train --out` or `geomtl import ... --out` writes)")
    model = model_file(folder)
    if _head(model, 4) != ZIP_MAGIC:
        raise InputError(f"{model} is not a saved Keras model (not a .keras zip archive); the "
                         "bundle is damaged: train or import it again")
    try:
        labels = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{folder / 'labels.json'} is not valid JSON ({exc}); the bundle is damaged: train or "
                         "import it again") from exc
    if not isinstance(labels, dict) or not isinstance(labels.get("partitionings"), list):
        raise InputError(f"{folder / 'labels.json'} lists no partitionings; the bundle is damaged: train or import "
                         "it again")
    return labels


def image_problem(path: Path) -> str | None:
    """Why a file named on the command line cannot be a photo (it does not exist, is empty, unreadable, or its
    first bytes are no image format's), or None when it may be one (decoding may still fail)."""
    if not path.exists():
        return f"{path} does not exist"
    if not path.is_file():
        return f"{path} is not a file"
    try:
        head = _head(path)
    except OSError as exc:
        return f"{path} cannot be read ({exc.strerror or exc})"
    if not head:
        return f"{path} is empty (0 bytes)"
    if _may_be_image(head) or path.suffix.lower() == ".dib":
        return None
    return f"{path} is not an image (its first bytes are no JPEG, PNG, GIF, BMP, TIFF, WebP or HEIF/AVIF)"


def _may_be_image(head: bytes) -> bool:
    """The first bytes of a file are an image format's, those the predictor recognises by content or by name."""
    return looks_like_image_bytes(head) or head.startswith(MORE_MAGIC)


def folder_has_image(folder: Path) -> tuple[bool, int]:
    """(whether the folder holds a photo at any depth, how many other files it holds), hidden files not counted;
    stops at the first photo. A photo: an image ending, or an image format's first bytes."""
    others = 0
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if not p.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if p.suffix.lower() in IMAGE_SUFFIXES:
            return True, others
        try:
            if _may_be_image(_head(p)):
                return True, others
        except OSError:
            return True, others  # unreadable: the predictor reports its error
        others += 1
    return False, others


def check_photos(inputs: list[str]) -> None:
    """At least one input may be a photo (a file whose first bytes are an image format's, or a folder holding
    one); else one error listing why each is not. Inputs that fail among others are the predictor's per-file
    errors, listed once in its summary."""
    problems = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found, others = folder_has_image(path)
            if found:
                return
            problems.append(f"no image files in {path}" + (f" ({others} files that are not images)" if others else ""))
            continue
        why = image_problem(path)
        if why is None:
            return
        problems.append(why)
    shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
    raise InputError(f"nothing to predict: {shown}; give photo files (JPEG, PNG, ...) or folders of them")


def check_checkpoint(path: str | os.PathLike) -> Path:
    """A PyTorch checkpoint by its first bytes (a zip archive, as ``torch.save`` writes, or a pickle, its legacy
    format), before torch is imported to read it."""
    path = require_file(path, "checkpoint", "give GeoEstimation's released .ckpt file")
    head = _head(path, 4)
    if head == ZIP_MAGIC or (head[:1] == b"\x80" and len(head) > 1 and head[1] in PICKLE_PROTOCOLS):
        return path
    raise InputError(f"{path} is not a PyTorch checkpoint (neither a zip archive nor a pickle: first bytes "
                     f"{head!r}); give GeoEstimation's released .ckpt file")


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default: stderr, where progress bars go) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def keras_verbose() -> int:
    """Keras ``fit`` verbosity for ``geomtl train``: a progress bar per step (1) when stdout and stderr are
    terminals; one line per epoch (2) when stdout goes to a pipe or a file but stderr is a terminal; nothing (0)
    when stderr is no terminal either (the trainer's progress bars follow this too; every epoch is in the
    bundle's ``history.csv``)."""
    if not is_terminal(sys.stderr):
        return 0
    return 1 if is_terminal(sys.stdout) else 2
