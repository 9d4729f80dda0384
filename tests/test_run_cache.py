"""The run cache under concurrent use: two processes asking for the same run get one training and the same
result, the run folder is intact, nothing half-written is left; a run killed mid-training is resumed."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from geomtl_core.files import model_file

import numpy as np
import pytest
from toydata import make_toy_dataset

SCRIPT = """
import json, sys
from pathlib import Path
from geomtl_core.compendium.runs import run_once
root, data = Path(sys.argv[1]), sys.argv[2]
over = {"data": {"root": data, "image_size": 32, "workers": 0},
        "partition": {"tau_min": 5, "tau_max": [200, 100, 60]}, "model": {"neck_units": 32},
        "train": {"epochs": int(sys.argv[3]), "batch_size": 32}}
r = run_once("toy", "smoke", over, root)
print(json.dumps(r, sort_keys=True))
"""


def _project(tmp_path: Path) -> tuple[Path, Path]:
    """A project folder (``_config.yml`` + ``notebooks/``) and a toy dataset with a test split."""
    root = tmp_path / "proj"
    (root / "notebooks").mkdir(parents=True)
    (root / "_config.yml").write_text("title: t\n")
    data = make_toy_dataset(root / "data" / "toy", n_train=240, n_val=60)
    shutil.copytree(data / "val", data / "test")
    shutil.copy(data / "val.csv", data / "test.csv")
    return root, data


def _start(root: Path, data: Path, epochs: int = 1) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(root), str(data), str(epochs)], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_processes_one_training_same_result(tmp_path):
    """Both processes return the same result (wall time included: one trained, the other waited on the lock and
    read it), the run folder holds a loadable model and its predictions, and no staging folder is left. Catches a
    cache without a lock (both train into one folder, results differ or the folder is mixed)."""
    root, data = _project(tmp_path)
    procs = [_start(root, data) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    a, b = (json.loads(o[0].strip().splitlines()[-1]) for o in outs)
    assert a == b
    run = root / "runs" / "smoke" / "toy"
    assert model_file(run) is not None and (run / "predictions_test.csv").exists()
    assert len((run / "history.csv").read_text().splitlines()) == 2  # one epoch, trained once
    assert not [p.name for p in run.parent.iterdir() if p.name != "toy" and not p.name.endswith(".lock")]
    assert a["test"]["prediction_files"]["best"] == str(run / "predictions_test.csv")
    saved = json.loads((root / "results" / "smoke" / "toy.json").read_text())
    assert saved["run_key"] == a["run_key"]


@pytest.mark.slow
def test_a_killed_run_leaves_no_result_and_is_resumed(tmp_path):
    """Killed during its second epoch: no run folder or result is published; the next call resumes the staging
    folder's checkpoint and publishes one run with both epochs."""
    root, data = _project(tmp_path)
    p = _start(root, data, epochs=2)
    staging = root / "runs" / "smoke" / "toy.partial"
    deadline = time.time() + 300
    while time.time() < deadline and not (staging / "checkpoints" / "state.json").exists():
        time.sleep(0.2)
    assert (staging / "checkpoints" / "state.json").exists(), p.communicate()[1][-2000:]
    p.kill()
    p.wait()
    assert not (root / "runs" / "smoke" / "toy").exists() and not (root / "results" / "smoke" / "toy.json").exists()
    q = _start(root, data, epochs=2)
    out, err = q.communicate(timeout=600)
    assert q.returncode == 0, err[-2000:]
    run = root / "runs" / "smoke" / "toy"
    assert not staging.exists() and model_file(run) is not None
    hist = (run / "history.csv").read_text().splitlines()
    assert len(hist) == 3 and np.isfinite(json.loads(out.strip().splitlines()[-1])["test"]["n"])
