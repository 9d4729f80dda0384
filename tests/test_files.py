"""The package's one way to write a file (:func:`geomtl_core.files.atomic_path`)."""

import os

from geomtl_core.files import atomic_path

import pytest


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    """Catches a writer that renames before the block has finished, or leaves its temporary behind."""
    target = tmp_path / "sub" / "result.json"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and str(os.getpid()) in tmp.name and tmp.suffix == ".json"
        tmp.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and sorted(p.name for p in target.parent.iterdir()) == ["result.json"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and len(list(target.parent.iterdir())) == 1
