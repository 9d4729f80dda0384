"""Publishing a trained run as the model bundle of its scale, ``models/<scale>/`` (``geomtl predict
models/default photo.jpg``): each scale writes only its own folder, by a copy and an atomic rename. A run that
went through :func:`~geomtl_core.inference.hybrid.hybrid_for_run` (it has ``hybrid.json``) is published with its
retrieval gallery (``gallery.npz``), so that ``geomtl predict`` and ``geomtl evaluate`` use the hybrid."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from geomtl_core.compendium.project import find_root
from geomtl_core.compendium.scales import SCALES
from geomtl_core.files import swap_folder


def publish_bundle(scale: str, name: str = "mtl_s3", dest: Path | None = None, root: Path | None = None,
                   gallery: bool = True) -> Path:
    """Copy a trained run (without its checkpoints) to ``models/<scale>`` (or ``dest``), replacing what was
    there only once the copy is complete; with its retrieval gallery when it has ``hybrid.json`` and ``gallery``.
    A run that kept only its trained heads is published with its whole image model (``model.keras``)."""
    from geomtl_core.files import GALLERY_FILE, HEADS_FILE, HYBRID_FILE, MODEL_FILE, model_file
    from geomtl_core.inference.hybrid import save_gallery  # torch and keras: only when publishing
    from geomtl_core.models.bundle import load_bundle, save_model_atomic

    root = find_root() if root is None else Path(root)
    src = root / "runs" / scale / name
    if model_file(src) is None:
        raise FileNotFoundError(f"run {name!r} at scale {scale!r} has no model at {src}; run `make book` first")
    dest = Path(dest) if dest is not None else root / "models" / scale
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    shutil.copytree(src, staging, ignore=shutil.ignore_patterns("checkpoints", "*.tmp*", "run_key.txt", GALLERY_FILE,
                                                                HEADS_FILE))
    try:
        if not (src / MODEL_FILE).exists():  # a run that kept its trained heads only: the image model, whole
            save_model_atomic(load_bundle(src).model, staging / MODEL_FILE)
        if gallery and (src / HYBRID_FILE).exists():
            save_gallery(src, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return swap_folder(staging, dest)


def main(argv: list[str] | None = None) -> int:
    """``python -m geomtl_core.compendium.publish --scale SCALE [--run NAME]`` (used by ``make book``)."""
    p = argparse.ArgumentParser(description="publish a trained experiment as the scale's model bundle")
    p.add_argument("--scale", default="default", choices=list(SCALES))
    p.add_argument("--run", default="mtl_s3", help="experiment name (default: mtl_s3)")
    p.add_argument("--no-gallery", action="store_true",
                   help="publish without the retrieval gallery (the bundle then predicts with the classifier alone)")
    args = p.parse_args(argv)
    print(f"model bundle of scale {args.scale}: {publish_bundle(args.scale, args.run, gallery=not args.no_gallery)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
