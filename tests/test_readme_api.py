"""The README's Python API example runs as written, and runs again (issue 37, item 6): the second run used to
stop with ``FileExistsError`` ("pass --resume ... choose a new --out": command-line words for a Python user).

The block is taken from the README itself and run by a fresh Python in a temporary project folder holding what
it expects: a small proxy export at ``data/proxy_3000_64px_100km`` and a ``photos/`` folder of JPEGs."""

import os
import re
import subprocess
import sys

from geomtl_core.compendium.project import find_root
from geomtl_core.data.proxy.export import ProxyConfig, export_proxy

import numpy as np
import pytest
from PIL import Image

ROOT = find_root(__file__)
DATA = "data/proxy_3000_64px_100km"


def python_block(text: str, heading: str) -> str:
    """The first ```python block after ``heading``."""
    found = re.search(rf"^{re.escape(heading)}$.*?^```python\n(.*?)^```", text, re.S | re.M)
    assert found, f"no ```python block after {heading!r}"
    return found.group(1)


README_BLOCK = python_block((ROOT / "README.md").read_text(encoding="utf-8"), "## The Python API")


def test_readme_and_api_page_show_the_same_example():
    """Catches the README's example and the book's API page drifting apart (one fixed, the other not)."""
    page = python_block((ROOT / "book" / "api.md").read_text(encoding="utf-8"), "## An example: train, evaluate, "
                                                                                   "predict, score")
    assert README_BLOCK == page


@pytest.mark.slow
def test_readme_api_example_runs_twice(tmp_path):
    """Catches an example that cannot be run as written (a name, path or key that no longer exists) and one that
    runs only once: the second run must reuse the bundle, not stop on the folder the first run wrote."""
    assert DATA in README_BLOCK and '"photos/"' in README_BLOCK  # what this test provides
    export_proxy(tmp_path / DATA, ProxyConfig(n=300), progress=False)
    (tmp_path / "photos").mkdir()
    for k in range(2):
        pixels = np.random.default_rng(k).integers(0, 255, (80, 100, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "photos" / f"photo_{k}.jpg", quality=90)
    script = tmp_path / "example.py"
    script.write_text(README_BLOCK, encoding="utf-8")
    env = {**os.environ, "TQDM_DISABLE": "1"}
    outputs = []
    for run in (1, 2):
        done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"run {run} failed:\n{done.stdout}\n{done.stderr}"
        outputs.append(done.stdout)
        if run == 1:
            model = tmp_path / "runs" / "example" / "model.keras"
            trained = model.stat().st_mtime_ns
    assert model.stat().st_mtime_ns == trained  # reused, not retrained
    for out in outputs:
        assert "photo_0.jpg (" in out and "photo_1.jpg (" in out and "2500 km" in out
    assert outputs[0] == outputs[1]  # the same bundle, metrics and predictions
