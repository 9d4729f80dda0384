"""Shared fixtures: the reference data beside the project, and Keras on torch."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


@pytest.fixture(scope="session")
def shared() -> Path:
    """Path to ../shared/reference (CI always has it; a missing one is an error, not a skip)."""
    if not SHARED.is_dir():
        raise FileNotFoundError(f"reference data not found at {SHARED}")
    return SHARED
