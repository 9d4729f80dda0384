"""Shared fixtures: the reference data beside the project, and Keras on torch.

``shared`` is ``../shared/reference``: real third-party reference data that every developer and CI run has
beside the project, but that a user's clone of the repository does not. Tests that need it take the
``shared`` fixture (directly or through a module fixture such as ``published`` or ``landmarks``), and:

- where the folder is missing they are SKIPPED, with a reason naming the missing folder;
- where the ``CI`` environment variable is set (to anything but ``""``, ``0`` or ``false``) a missing folder
  is an ERROR, never a skip: CI always has ``../shared``.

``GEOMTL_SHARED`` overrides the folder's location (the path of ``reference`` itself). Point it at a
folder that does not exist to see what a bare clone gets::

    GEOMTL_SHARED=/nonexistent .venv/bin/python -m pytest -m "not slow"           # those tests skip
    CI=true GEOMTL_SHARED=/nonexistent .venv/bin/python -m pytest -m "not slow"   # those tests error
"""

import os
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

DEFAULT_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def shared_dir() -> Path:
    """The reference-data folder: ``$GEOMTL_SHARED`` if set, else ``../shared/reference``."""
    override = os.environ.get("GEOMTL_SHARED")
    return Path(override).expanduser().resolve() if override else DEFAULT_SHARED


def in_ci() -> bool:
    """True where the ``CI`` environment variable is set to a true-ish value (as CI services do)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def shared() -> Path:
    """Path to the reference data; skipped where missing, an error instead when ``CI`` is set."""
    path = shared_dir()
    if not path.is_dir():
        message = f"reference data folder {path} is missing (../shared is beside the project, not in a clone)"
        if in_ci():
            pytest.fail(f"{message}; CI must have it", pytrace=False)
        pytest.skip(message)
    return path
