"""SyncBatchNormalization: 2 gloo processes on halves of a batch == 1 process on the whole batch."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import geomtl_core  # noqa: F401 - selects the torch backend
from geomtl_core.models.sync_bn import SyncBatchNormalization, sync_batchnorm_enabled

import keras
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from sync_bn_worker import N, batch, step

WORKER = str(Path(__file__).parent / "sync_bn_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """Run the worker as ranks 0 and 1; returns {(bn, rank): results}."""
    out = tmp_path_factory.mktemp("syncbn")
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KERAS_BACKEND": "torch"}
    procs = [subprocess.Popen([sys.executable, WORKER, str(r), str(port), str(out)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in (0, 1)]
    logs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(log[-2000:] for log in logs)
    return {(bn, r): dict(np.load(out / f"{bn}_rank{r}.npz")) for bn in ("sync", "plain") for r in (0, 1)}


def _same(a: dict, b: dict, rows: slice | None = None, atol: float = 1e-5) -> None:
    for k in a:
        want = b[k][rows] if rows is not None and k == "pred" else b[k]
        np.testing.assert_allclose(a[k], want, rtol=1e-5, atol=atol, err_msg=k)


@pytest.mark.slow
def test_two_processes_equal_one_with_the_whole_batch(two_processes):
    """Forward output, averaged gradients and moving statistics match one process on 2N images."""
    x, y = batch()
    single = step("sync", x, y)  # not distributed here: the parent's BatchNorm behaviour
    assert single.keys() == two_processes["sync", 0].keys() and any(k.startswith("grad_") for k in single)
    for r in (0, 1):
        _same(two_processes["sync", r], single, rows=slice(r * N, (r + 1) * N))


@pytest.mark.slow
def test_plain_batchnorm_differs(two_processes):
    """The control: per-process statistics give other outputs, gradients and moving statistics."""
    x, y = batch()
    single = step("plain", x, y)
    for key in ("pred", "moving_mean", "moving_variance"):
        with pytest.raises(AssertionError):
            _same({key: two_processes["plain", 0][key]}, single, rows=slice(0, N))
    grads = [k for k in single if k.startswith("grad_conv")]
    assert grads and not np.allclose(two_processes["plain", 0][grads[0]], single[grads[0]], atol=1e-5)


def test_not_distributed_is_plain_batchnorm_and_serialises(tmp_path):
    """Outside a process group the layer is Keras' BatchNormalization; it loads with safe_mode=True."""
    x, y = batch()
    a, b = step("sync", x, y), step("plain", x, y)
    assert not sync_batchnorm_enabled()
    _same(a, b, atol=0)
    inputs = keras.Input((6, 6, 3))
    model = keras.Model(inputs, SyncBatchNormalization(name="bn")(inputs))
    model.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert isinstance(back.get_layer("bn"), SyncBatchNormalization)
