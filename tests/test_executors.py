"""Independent runs on executors: in-process, local worker processes and a local Dask cluster give the same
results; a killed worker's task runs again; a failing task is retried a bounded number of times and reported
with its error while the others finish; the smoke grid trained by 2 workers or on a local Dask cluster equals the
serial grid, also when a worker is killed in the middle of a run."""

import json
import shutil
from pathlib import Path

from geomtl_core.compendium.executors import Executor

import exec_tasks
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("executor", [Executor(), Executor(workers=2), Executor(address="local:2")],
                         ids=["serial", "processes", "dask"])
def test_every_engine_gives_the_same_results(executor):
    import cloudpickle

    cloudpickle.register_pickle_by_value(exec_tasks)  # Dask workers need not import the tests
    assert executor.run([(exec_tasks.square, (k,)) for k in range(6)]) == [0, 1, 4, 9, 16, 25]


@pytest.mark.slow
@pytest.mark.parametrize("executor", [Executor(workers=2), Executor(address="local:2")], ids=["processes", "dask"])
def test_a_killed_worker_is_replaced_and_its_task_runs_again(tmp_path, executor):
    """The first attempt kills its worker process (``os._exit``, as the OOM killer would); the task runs again on
    a new worker and the other tasks complete. Catches a pool that dies with its worker."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(exec_tasks)
    out = executor.run([(exec_tasks.die_once, (str(tmp_path / "marker"),)), (exec_tasks.square, (3,))])
    assert out == [42, 9]


def test_a_failing_task_is_retried_then_reported_and_the_others_finish(tmp_path):
    """``retries`` more attempts, then the exception is the task's result; the other tasks' results are there.
    Catches unbounded retries and one failure stopping the batch."""
    counter = tmp_path / "attempts"
    out = Executor(workers=2, retries=2).run([(exec_tasks.always_fail, (str(counter),)), (exec_tasks.square, (4,))])
    assert isinstance(out[0], ValueError) and out[1] == 16
    assert counter.read_text() == "3"


@pytest.mark.slow
def test_each_worker_process_gets_a_gpu_of_its_own(monkeypatch):
    """With ``CUDA_VISIBLE_DEVICES=3,5`` two local workers see one GPU each, never the same one (no GPU is
    touched: the variable is only read). Catches GPUs assigned by process id, where two workers can collide."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    out = Executor(workers=2).run([(exec_tasks.gpu_of_worker, (1.0,)) for _ in range(6)])
    gpu = dict(out)
    assert len(gpu) == 2 and sorted(gpu.values()) == ["3", "5"]


def _project(tmp: Path) -> Path:
    """A bare project folder (what find_root looks for) that builds its own smoke data and runs."""
    (tmp / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "_config.yml", tmp / "_config.yml")
    return tmp


SUBGRID = [("frozen", 1.0, "st"), ("frozen", 1.0, "s3"), ("tuned", 1.0, "st"), ("cnn_w25", 1.0, "s3")]


def _grid(root: Path, executor: Executor, monkeypatch) -> dict:
    """The smoke scale's subgrid (a cross-validated frozen pair, a tuned arm with its epoch candidates and a small
    CNN's multi-task arm decoded once a run, the recipe before them: one run of every kind the grid trains)
    trained from nothing in the project ``root``, one torch thread per process."""
    from geomtl_core.compendium import grid
    from geomtl_core.compendium.design import Cell

    import torch

    monkeypatch.setattr(grid, "cells", lambda scale: [Cell(*c) for c in SUBGRID])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return grid.run_grid("smoke", _project(root), executor)
    finally:
        torch.set_num_threads(threads)


def _same(reference: dict, other: dict) -> None:
    """Every cell of ``other`` has ``reference``'s run key, folds and test metrics, to the last digit."""
    for cell, result in other.items():
        ref = reference[cell]
        assert result["run_key"] == ref["run_key"] and result.get("folds") == ref.get("folds"), cell.name
        assert json.dumps(result["test"]["methods"]) == json.dumps(ref["test"]["methods"]), cell.name


@pytest.fixture(scope="module")
def serial_grid(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        return _grid(tmp_path_factory.mktemp("serial") / "p", Executor(), mp)


@pytest.mark.slow
@pytest.mark.parametrize("executor", [Executor(workers=2, threads=1), Executor(address="local:2", threads=1)],
                         ids=["processes", "dask"])
def test_smoke_grid_on_two_workers_equals_the_serial_grid(tmp_path, monkeypatch, serial_grid, executor):
    """The smoke subgrid trained in this process and by 2 local worker processes (or a local Dask cluster of 2),
    each from nothing in its own project: the same cells, run keys, folds and test metrics, and nothing
    half-written (no staging folder left). One thread per process in both, so that the arithmetic is the same.
    On Dask this caught layers seeded from Python's shared ``random``, which the worker's own threads draw from."""
    parallel = _grid(tmp_path / "p", executor, monkeypatch)
    assert set(parallel) == set(serial_grid)
    _same(serial_grid, parallel)
    assert not list((tmp_path / "p" / "runs" / "smoke").rglob("*.partial"))


@pytest.mark.slow
def test_a_worker_killed_mid_run_leaves_the_grid_complete_and_identical(tmp_path, monkeypatch, serial_grid):
    """While 2 local workers train the smoke subgrid, the worker holding the lock of a run whose first epoch
    is checkpointed is killed (SIGKILL, as the OOM killer would): the pool is rebuilt, the run is retried and
    resumes from its staging folder, and the grid completes with the serial grid's numbers and no staging folder
    left. Catches a pool that dies with its worker (the grid never completes) and a run published half-trained
or left staged."""
    import signal
    import threading
    import time

    import psutil

    root, stop, killed = tmp_path / "p", threading.Event(), []

    def kill_one_mid_run():
        runs = root / "runs" / "smoke"
        while not stop.is_set() and not killed:
            try:  # a staging folder may be renamed away while the glob walks it
                staged = list(runs.glob("**/*.partial/checkpoints/state.json")) if runs.exists() else []
            except FileNotFoundError:
                continue
            for proc in psutil.Process().children():
                try:  # the pool's spawned workers only: a DataLoader worker forked by this process (the recipe
                    # trains here first) inherits its open lock files too
                    if "spawn_main" not in " ".join(proc.cmdline()):
                        continue
                    held = {Path(f.path).name for f in proc.open_files()}
                except psutil.Error:
                    continue
                if any(f".{s.parents[1].name.removesuffix('.partial')}.lock" in held for s in staged):
                    proc.send_signal(signal.SIGKILL)
                    killed.append(proc.pid)
                    return
            time.sleep(0.02)

    watcher = threading.Thread(target=kill_one_mid_run, daemon=True)
    watcher.start()
    try:
        parallel = _grid(root, Executor(workers=2, threads=1), monkeypatch)
    finally:
        stop.set()
        watcher.join()
    assert len(killed) == 1, "no worker was caught mid-run"
    assert len(parallel) == len(SUBGRID)
    _same(serial_grid, parallel)
    assert not list((root / "runs" / "smoke").rglob("*.partial"))
