"""The ``shared`` fixture (conftest.py): a clone without ../shared skips those tests, CI fails them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# one test that takes ``shared`` directly, one through a module fixture (``published``)
TESTS = ["tests/test_cli.py::test_score_json_on_published_file", "tests/test_partitioning.py::test_relate_published"]


def _pytest(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "GEOMTL_SHARED")}
    env["GEOMTL_SHARED"] = str(tmp_path / "no_such_folder")
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *TESTS],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("ci", [None, "false"])
def test_missing_reference_data_skips_with_the_folder_named(tmp_path, ci):
    run = _pytest(tmp_path, ci)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "2 skipped" in run.stdout and "passed" not in run.stdout and "error" not in run.stdout
    assert f"reference data folder {tmp_path / 'no_such_folder'} is missing" in run.stdout


@pytest.mark.parametrize("ci", ["true"])
def test_missing_reference_data_is_an_error_in_ci(tmp_path, ci):
    run = _pytest(tmp_path, ci)
    assert run.returncode == 1, run.stdout[-3000:]
    assert "2 errors" in run.stdout and "skipped" not in run.stdout
    assert "CI must have it" in run.stdout and str(tmp_path / "no_such_folder") in run.stdout
