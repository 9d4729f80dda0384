"""Data-parallel training with torchrun (gloo on CPU): equivalence with one process, exact sharding, resume."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import geomtl_core.models.multitask  # noqa: F401 - registers the custom Keras classes
from geomtl_core.data.loaders import EpochSampler

import keras
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from toydata import make_toy_dataset

TORCHRUN = str(Path(sys.executable).parent / "torchrun")


def test_sharding_is_disjoint_and_matches_one_process():
    """Two ranks read disjoint shares whose union per step is one process's doubled batch."""
    n, b = 203, 16
    one = EpochSampler(n, seed=3, batch=2 * b)
    ranks = [EpochSampler(n, seed=3, rank=r, world=2, batch=b) for r in (0, 1)]
    for s in (one, *ranks):
        s.set_epoch(5)
    single = one.indices()
    shares = [s.indices() for s in ranks]
    assert len(shares[0]) == len(shares[1]) == len(ranks[0]) == (n // (2 * b)) * b
    assert not set(shares[0]) & set(shares[1])
    steps = len(shares[0]) // b
    for k in range(steps):
        union = set(shares[0][k * b : (k + 1) * b]) | set(shares[1][k * b : (k + 1) * b])
        assert union == set(single[2 * b * k : 2 * b * (k + 1)])
    assert sorted(shares[0] + shares[1]) == sorted(single[: 2 * b * steps])  # each sample once, none skipped


def _args(out, root, batch, epochs=1, resume=False):
    sets = {"data.root": root, "data.image_size": 32, "data.workers": 0, "data.cache_dir": Path(root) / "cache",
            "partition.tau_min": 5, "partition.tau_max": "[200, 60]", "model.neck_units": 32,
            "model.neck_norm": "layer", "model.dropout": 0.0, "model.freeze_backbone": True,
            "train.epochs": epochs, "train.batch_size": batch, "data.scene_tasks": "[s3]"}
    args = ["-m", "geomtl_core.cli", "train", "--out", str(out)]
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    return args + (["--resume"] if resume else [])


def _torchrun(args):
    return [TORCHRUN, "--standalone", "--nproc_per_node", "2", *args]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "KERAS_BACKEND": "torch"}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("ddp"), n_train=400, n_val=64)


@pytest.mark.slow
def test_two_processes_equal_one_with_double_batch(toy, tmp_path):
    """gloo, 2 x batch 16 == 1 x batch 32 after one epoch (weights within float tolerance)."""
    subprocess.run([sys.executable, *_args(tmp_path / "one", toy, 32)], check=True, capture_output=True, env=_env())
    two = subprocess.run(_torchrun(_args(tmp_path / "two", toy, 16)), capture_output=True, text=True, env=_env())
    assert two.returncode == 0, two.stderr[-3000:]
    a = keras.saving.load_model(tmp_path / "one" / "model.keras", safe_mode=True).get_weights()
    b = keras.saving.load_model(tmp_path / "two" / "model.keras", safe_mode=True).get_weights()
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)
    assert not (tmp_path / "two" / "checkpoints" / "last.tmp.keras").exists()


@pytest.mark.slow
def test_killed_two_process_run_resumes(toy, tmp_path):
    """Kill a 2-process run after its first checkpoint; torchrun --resume finishes all epochs."""
    out = tmp_path / "run"
    proc = subprocess.Popen(_torchrun(_args(out, toy, 16, epochs=4)), env=_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "checkpoints" / "state.json"
    deadline = time.time() + 300
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert state.exists()
    done = subprocess.run(_torchrun(_args(out, toy, 16, epochs=4, resume=True)), capture_output=True, text=True,
                          env=_env())
    assert done.returncode == 0, done.stderr[-3000:]
    history = (out / "history.csv").read_text().strip().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["0", "1", "2", "3"]  # each epoch logged once
    assert (out / "model.keras").exists() and (out / "metrics.json").exists()
