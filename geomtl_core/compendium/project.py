"""Where a project lives and what built it: the project root (found from the working directory, never
from where the package is installed), the git commit and the package versions recorded with every result."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

PROJECT_MARKERS = ("_config.yml", "notebooks/")
RECORDED_PACKAGES = ("geomtl", "torch", "torchvision", "keras", "numpy", "pandas", "papermill", "jupyter-book")


class ProjectRootNotFound(FileNotFoundError):
    """No geomtl project folder (``_config.yml`` + ``notebooks/``) where one was looked for."""


def is_project_root(path: Path) -> bool:
    """Whether ``path`` holds the project's ``_config.yml`` and ``notebooks/`` folder."""
    return (path / "_config.yml").is_file() and (path / "notebooks").is_dir()


def find_root(start: str | Path | None = None) -> Path:
    """The project root: the nearest folder at or above ``start`` (default: the working directory)
    holding ``_config.yml`` and ``notebooks/``; :class:`ProjectRootNotFound` when there is none."""
    here = (Path.cwd() if start is None else Path(start)).expanduser().resolve()
    if here.exists() and not here.is_dir():
        here = here.parent
    for folder in (here, *here.parents):
        if is_project_root(folder):
            return folder
    raise ProjectRootNotFound(
        f"no geomtl project at or above {here}: no folder there holds both {' and '.join(PROJECT_MARKERS)}. "
        "Run from inside the project (its top folder or any folder below it), or pass --root PROJECT."
    )


def resolve_root(root: str | Path | None = None) -> Path:
    """An explicit project root (checked, not searched upwards), or :func:`find_root` from the working directory."""
    if root is None:
        return find_root()
    path = Path(root).expanduser().resolve()
    if not is_project_root(path):
        raise ProjectRootNotFound(f"{path} is not a geomtl project root: it must hold {' and '.join(PROJECT_MARKERS)}")
    return path


def __getattr__(name: str):
    """``ROOT``: the project root of the working directory, looked up on each access
    (``from geomtl_core.compendium.project import ROOT`` in a notebook)."""
    if name == "ROOT":
        return find_root()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def git_commit(root: Path | None = None) -> str:
    """Current commit (with ``-dirty`` when the tree has changes) of the repository holding ``root``
    (default: the working directory), or ``unknown``."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape results."""
    out = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out
