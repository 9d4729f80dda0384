"""The multi-task model: learns, saves, resumes exactly, and predicts hierarchically."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import geomtl_core  # noqa: F401
from geomtl_core.cli import main
from geomtl_core.config import ExperimentConfig
from geomtl_core.data.metadata import read_metadata
from geomtl_core.geo.baselines import prior_baseline, random_baseline, true_cell_oracle
from geomtl_core.geo.geolocate import geolocate, top_k
from geomtl_core.geo.partitioning import Hierarchy, Partitioning
from geomtl_core.models.bundle import load_bundle
from geomtl_core.models.multitask import GeoMTLModel, compile_model
from geomtl_core.training.trainer import final_logs, train

import keras
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from toydata import make_toy_dataset, train_tiny_bundle


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = make_toy_dataset(tmp_path_factory.mktemp("toy"))
    (root / "test.csv").write_text((root / "val.csv").read_text())
    os.symlink(root / "val", root / "test")
    return root


def _cfg(root, **train):
    return ExperimentConfig.from_dict({
        "data": {"root": str(root), "image_size": 32, "workers": 1},
        "partition": {"tau_min": 5, "tau_max": [200, 60]},
        "model": {"neck_units": 64},
        "train": {"epochs": 3, "batch_size": 32, **train},
    })


@pytest.mark.slow
def test_tiny_run_learns_beyond_the_prior(toy, tmp_path):
    """Small CNN, 600 images, 3 epochs: accuracy at 2500 km beats always guessing the biggest cell."""
    metrics = train(_cfg(toy), tmp_path / "b", verbose=0)
    val = read_metadata(toy / "val.csv")
    bundle = load_bundle(tmp_path / "b")
    prior = prior_baseline(bundle.parts[-1], val.lat.to_numpy(), val.lon.to_numpy())
    got = metrics["val"]["methods"]["hierarchy"]["acc_2500km"]
    assert got > prior.accuracy[2500] + 0.2, (got, prior.accuracy[2500])
    oracle = true_cell_oracle(bundle.parts[-1], val.lat.to_numpy(), val.lon.to_numpy())
    rnd = random_baseline(bundle.parts[-1], val.lat.to_numpy(), val.lon.to_numpy())
    assert oracle.accuracy[2500] >= got and oracle.accuracy[25] >= rnd.accuracy[25]
    # the bundle is self-contained: evaluate (into its own new folder, never the bundle's files) + score
    before = sorted(p.name for p in (tmp_path / "b").iterdir())
    assert main(["evaluate", str(tmp_path / "b"), "--data", str(toy), "--json", "--workers", "0"]) == 0
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == sorted([*before, "eval-test"])
    assert main(["score", str(tmp_path / "b" / "eval-test" / "predictions.csv"), "--json"]) == 0


def _train_cli(out, root, resume=False):
    args = [sys.executable, "-m", "geomtl_core.cli", "train", "--out", str(out),
            "--set", f"data.root={root}", "--set", "data.image_size=32", "--set", "data.workers=1",
            "--set", "partition.tau_min=5", "--set", "partition.tau_max=[200, 60]",
            "--set", "model.neck_units=64", "--set", "train.epochs=3", "--set", "train.batch_size=32"]
    return args + (["--resume"] if resume else [])


@pytest.mark.slow
def test_killed_and_resumed_equals_uninterrupted(toy, tmp_path):
    """SIGKILL after the first epoch's checkpoint, resume: same final losses and metrics as one run."""
    ref = tmp_path / "ref"
    subprocess.run(_train_cli(ref, toy), check=True, capture_output=True)
    run = tmp_path / "run"
    proc = subprocess.Popen(_train_cli(run, toy), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = run / "checkpoints" / "state.json"
    deadline = time.time() + 300
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(state.read_text())["epoch"]
    assert killed_at < 3, "the run finished before it could be killed"
    subprocess.run(_train_cli(run, toy, resume=True), check=True, capture_output=True)
    assert _logged_epochs(run) == _logged_epochs(ref) == [0, 1, 2]  # one row per epoch, none repeated
    a, b = final_logs(ref), final_logs(run)
    assert a["epochs_logged"] == b["epochs_logged"] == 3
    for key in ("loss", "cells_5_60_loss", "cells_5_60_acc", "s3_loss"):
        assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), key
    ma = json.loads((ref / "metrics.json").read_text())["val"]["methods"]["hierarchy"]
    mb = json.loads((run / "metrics.json").read_text())["val"]["methods"]["hierarchy"]
    assert mb["acc_2500km"] == pytest.approx(ma["acc_2500km"]) and mb["median_km"] == pytest.approx(ma["median_km"])
    # resuming the finished run says so and rewrites nothing (it once re-evaluated silently)
    files = {f: f.stat().st_mtime_ns for f in run.rglob("*") if f.is_file()}
    again = subprocess.run(_train_cli(run, toy, resume=True), check=True, capture_output=True, text=True)
    assert "already finished" in again.stderr
    assert {f: f.stat().st_mtime_ns for f in run.rglob("*") if f.is_file()} == files


def _logged_epochs(out) -> list[int]:
    """The epoch column of history.csv, row by row (the header must be the only non-numeric line)."""
    lines = (Path(out) / "history.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,") and all(line.split(",")[0].isdigit() for line in lines[1:]), lines
    return [int(line.split(",")[0]) for line in lines[1:]]


class _Killed(BaseException):
    """Stands in for SIGKILL at one exact point of an epoch's end (BaseException: nothing catches it)."""


@pytest.mark.parametrize("killed_in", ["Checkpoint", "CSVLogger"])
def test_kill_between_log_and_checkpoint_logs_each_epoch_once(tmp_path, monkeypatch, killed_in):
    """Killed at the end of epoch 1, after history.csv got its row but before the checkpoint (or the other
    way round): the resumed run's history.csv has exactly one row per epoch, 0, 1, 2 in order."""
    import geomtl_core.training.trainer as training

    root = make_toy_dataset(tmp_path / "toy", n_train=64, n_val=16, size=32)
    cfg = ExperimentConfig.from_dict({
        "data": {"root": str(root), "image_size": 32, "workers": 0},
        "partition": {"tau_min": 5, "tau_max": [200, 60]},
        "model": {"neck_units": 8},
        "train": {"epochs": 3, "batch_size": 32},
    })
    cls = training.Checkpoint if killed_in == "Checkpoint" else keras.callbacks.CSVLogger
    real = cls.on_epoch_end

    def dies_at_epoch_1(self, epoch, logs=None):
        if epoch == 1:
            raise _Killed
        return real(self, epoch, logs)

    with monkeypatch.context() as patch, pytest.raises(_Killed):
        patch.setattr(cls, "on_epoch_end", dies_at_epoch_1)
        train(cfg, tmp_path / "b", verbose=0)
    state = json.loads((tmp_path / "b" / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 1  # epoch 1 was not checkpointed: the resumed run does it again
    assert _logged_epochs(tmp_path / "b") == ([0, 1] if killed_in == "Checkpoint" else [0])
    train(cfg, tmp_path / "b", resume=True, verbose=0)
    assert _logged_epochs(tmp_path / "b") == [0, 1, 2]
    assert final_logs(tmp_path / "b")["epochs_logged"] == 3


def test_second_run_into_same_folder_is_refused(toy, tmp_path):
    """Nothing is overwritten: an existing run needs --resume."""
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    (tmp_path / "b" / "checkpoints" / "state.json").write_text('{"epoch": 1}')
    with pytest.raises(FileExistsError, match="--resume"):
        train(_cfg(toy), tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(_cfg(toy), tmp_path / "c", resume=True)


@pytest.mark.parametrize("weighting", ["fixed", "learned"])
def test_model_config_round_trip_and_keras_file(tmp_path, weighting):
    """get_config -> from_config -> get_config is identical; .keras reloads with safe_mode and same outputs."""
    m = GeoMTLModel({"coarse": 4, "fine": 9}, {"s3": 3}, input_size=32, neck_units=16, loss_weighting=weighting)
    compile_model(m, keras.optimizers.SGD(0.01))
    x = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3)).astype("uint8")
    y1 = m(x)
    cfg = m.get_config()
    assert GeoMTLModel.from_config(cfg).get_config() == cfg
    m.save(tmp_path / "m.keras")
    m2 = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    y2 = m2(x)
    for t in ("coarse", "fine", "s3"):
        np.testing.assert_allclose(np.asarray(y1[t].detach()), np.asarray(y2[t].detach()), atol=1e-6)
    assert (m.log_vars is not None) == (weighting == "learned")


def test_bad_model_arguments_are_explained():
    """Errors say what was received."""
    with pytest.raises(ValueError, match="loss_weighting"):
        GeoMTLModel({"a": 2}, loss_weighting="magic")
    with pytest.raises(ValueError, match="unknown backbone"):
        GeoMTLModel({"a": 2}, backbone="vgg99")
    with pytest.raises(ValueError, match=r"unknown key config\.train\.epoch"):
        ExperimentConfig.from_dict({"train": {"epoch": 3}})


def test_geolocate_hierarchical_hand_example():
    """Three partitionings: the f* choice differs from the fine argmax and maps to its class mean."""
    z = np.zeros
    parts = [Partitioning(np.array([0x1000000000000000], np.uint64), np.array([9]), z(1), z(1), name="c"),
             Partitioning(np.array([0x0400000000000000, 0x0c00000000000000], np.uint64), np.array([5, 4]),
                          np.array([1.0, 2.0]), np.array([1.0, 2.0]), name="m"),
             Partitioning(np.array([0x0100000000000000, 0x0300000000000000, 0x0d00000000000000], np.uint64),
                          np.array([2, 3, 4]), np.array([10.0, 20.0, 30.0]), np.array([11.0, 21.0, 31.0]), name="f")]
    hier = Hierarchy(np.array([[0, 0, 0], [0, 0, 1], [0, 1, 2]]), {})
    probs = {"c": np.array([[1.0]]), "m": np.array([[0.9, 0.1]]), "f": np.array([[0.2, 0.35, 0.45]])}
    g = geolocate(probs, parts, hier)
    assert g["f"].fine_class[0] == 2  # fine alone: class 2
    assert g["hierarchy"].fine_class[0] == 1  # 0.9*0.35=0.315 > 0.1*0.45=0.045
    assert (g["hierarchy"].lat[0], g["hierarchy"].lon[0]) == (20.0, 21.0)
    idx, p = top_k(probs["f"], 2)
    assert idx.tolist() == [[2, 1]] and p.tolist() == [[0.45, 0.35]]


@pytest.mark.slow
def test_cached_feature_training_gives_an_ordinary_bundle(toy, tmp_path):
    """Frozen backbone + cached features: the saved image model reproduces the training-time predictions."""
    import pandas as pd

    cfg = ExperimentConfig.from_dict({**_cfg(toy).to_dict(), "model": {"neck_units": 64, "freeze_backbone": True},
                                      "data": {**_cfg(toy).to_dict()["data"], "cache_dir": str(tmp_path / "cache")}})
    metrics = train(cfg, tmp_path / "b", verbose=0)
    assert metrics["cached_features"] and list((tmp_path / "cache").glob("features_small_cnn_32_*.f32.npy"))
    assert main(["evaluate", str(tmp_path / "b"), "--data", str(toy), "--split", "val", "--workers", "0",
                 "--out", str(tmp_path / "ev.csv"), "--json"]) == 0
    a = pd.read_csv(tmp_path / "b" / "predictions_val.csv")
    b = pd.read_csv(tmp_path / "ev.csv")
    assert (a.fine_class == b.fine_class).all()
    np.testing.assert_allclose(a.score, b.score, atol=1e-4)


@pytest.mark.parametrize("backbone", ["small_cnn", "mobilenetv3small", "efficientnet_lite0", "efficientnetb0"])
def test_every_backbone_gives_finite_features_after_build(backbone):
    """Regression: building the model by a first call must not corrupt preprocessing (NaN features)."""
    import torch

    m = GeoMTLModel({"a": 5}, {"s3": 3}, backbone=backbone, input_size=32, neck_units=8,
                    pretrained=backbone == "efficientnet_lite0")
    m(np.zeros((1, 32, 32, 3), "uint8"))
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3)).astype("uint8"))
    with torch.no_grad():
        f = m.backbone_features(x)
        out = m(x)
    assert torch.isfinite(f).all() and all(torch.isfinite(v).all() for v in out.values())


@pytest.mark.slow
def test_keep_freed_memory_takes_effect_once_per_process():
    """glibc accepts the allocator settings (mallopt returns 1 for each) and they are applied once."""
    import subprocess
    import sys

    code = ("from geomtl_core.training import malloc as m; a = m.keep_freed_memory(); "
            "m.ctypes = None; print(a, m.keep_freed_memory())")  # a second call must not reach ctypes again
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    glibc = sys.platform.startswith("linux") and __import__("platform").libc_ver()[0] == "glibc"
    assert out == ([str(glibc)] * 2)


@pytest.mark.slow
def test_a_run_shorter_than_its_checkpoint_interval_writes_no_checkpoint(tmp_path):
    """``train.checkpoint_every_s``: 0 checkpoints every epoch (resumable), a long interval none at all, and the
    bundle is the same either way. Catches checkpoints written regardless of the interval (the default book's
    short runs paying a save per epoch) and an interval that changes what is trained."""
    toy = make_toy_dataset(tmp_path / "toy")
    every = train_tiny_bundle(toy, tmp_path / "every", train={"epochs": 2, "checkpoint_every_s": 0.0})
    never = train_tiny_bundle(toy, tmp_path / "never", train={"epochs": 2, "checkpoint_every_s": 1e9})
    assert json.loads((every / "checkpoints" / "state.json").read_text())["epoch"] == 2
    assert not (never / "checkpoints").exists()
    a, b = ((d / "predictions_val.csv").read_bytes() for d in (every, never))
    assert a == b
