"""Writing a file so that a kill or a second process never leaves half of it: every writer of the package goes
through :func:`atomic_path` (a temporary of this process beside the target, renamed over it)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MODEL_FILE = "model.keras"
"""A bundle's image model (Keras archive, loaded with ``safe_mode=True``)."""
HEADS_FILE = "heads.npz"
"""A frozen-backbone run's trained neck and heads alone (their weights, no optimizer state), in place of
:data:`MODEL_FILE`: the ImageNet backbone every such run shares is rebuilt from the config when the bundle loads
(:func:`geomtl_core.models.bundle.load_bundle`) and saved whole when the run is published."""


def model_file(folder: str | Path) -> Path | None:
    """The bundle folder's model: its image model (:data:`MODEL_FILE`), else a run's trained heads
    (:data:`HEADS_FILE`), else None."""
    for name in (MODEL_FILE, HEADS_FILE):
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return None


HYBRID_FILE = "hybrid.json"
"""A run's or bundle's hybrid settings chosen on validation (:func:`geomtl_core.inference.hybrid.hybrid_for_run`),
beside its gallery."""
GALLERY_FILE = "gallery.npz"
"""A bundle's retrieval gallery (:meth:`geomtl_core.geo.retrieval.Gallery.to_npz`: float16 embeddings,
coordinates, fine cells), written by :func:`geomtl_core.inference.hybrid.save_gallery` and read by the predictor;
the settings it is used with are the bundle's ``hybrid.json``."""


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (this process's own, same suffix) to write to; when the block ends
    without error it is renamed over ``path`` (readers see the old file or the new one, never half), otherwise
    removed and ``path`` left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def swap_folder(staging: str | Path, out: str | Path) -> Path:
    """Replace the folder ``out`` by the complete folder ``staging`` with renames: an earlier ``out`` is moved
    aside first and deleted only once ``staging`` is in place, so a kill leaves the old folder or the new one
    (the one writer of whole folders: runs, published bundles, imported photos)."""
    staging, out = Path(staging), Path(out)
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)
    return out


def check_run_folder(out: str | Path, resume: bool) -> Path:
    """The checkpoint state file of a training run's folder, checked against ``resume`` before anything is
    written: a file where the folder should be, ``resume`` with no run to resume, or a new run over an earlier
    one are errors (read by the trainer, and by ``geomtl train`` before torch and Keras load)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} is a file; give a folder for the bundle")
    state = out / "checkpoints" / "state.json"
    if resume and not state.exists():
        raise FileNotFoundError(f"nothing to resume: {state} not found; start a new run (resume=False, no --resume)")
    if not resume and state.exists():
        raise FileExistsError(f"{out} already holds a training run; continue it with resume=True (--resume on the "
                              "command line) or choose a new output folder")
    return state
