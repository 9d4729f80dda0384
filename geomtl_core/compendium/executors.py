"""Where independent runs execute: in this process (the default), in local worker processes (``workers``), or on a
Dask cluster (``address``). Dask rather than Ray: it is pure Python and light to install, its workers are plain
processes restarted by a nanny when they die, and dask-jobqueue puts the same client on SLURM, PBS or SGE queues;
nothing here schedules or talks RPC itself.

A task is a picklable call ``(function, args)``. Tasks must be safe to run twice or at once (the run cache's lock
and atomic publish make a training run so), because a failed task is retried, up to ``retries`` more times, and a
task whose worker was killed is run again. What still fails is returned as the exception, not raised, so the
other tasks finish."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

Task = tuple[Callable[..., Any], tuple]


@dataclass
class Executor:
    """How to run independent tasks: ``workers`` local processes (1: in this process) or a Dask scheduler at
    ``address`` (``"local:N"``: a local Dask cluster of N processes). ``threads`` per worker: the CPU's cores
    shared out (torch's thread pool; a worker of a GPU machine gets one GPU by ``CUDA_VISIBLE_DEVICES``)."""

    workers: int = 1
    address: str = ""
    retries: int = 2
    threads: int = field(default=0)

    def __post_init__(self) -> None:
        if self.workers < 1 or self.retries < 0:
            raise ValueError(f"workers must be >= 1 and retries >= 0, got {self.workers} and {self.retries}")
        if not self.threads:
            n = int(self.address.split(":", 1)[1]) if self.address.startswith("local:") else self.workers
            self.threads = max(1, (os.cpu_count() or 1) // n)

    @classmethod
    def from_env(cls) -> Executor:
        """The executor the runner asked for (``GEOMTL_WORKERS``, ``GEOMTL_DASK``); in-process by default."""
        return cls(workers=int(os.environ.get("GEOMTL_WORKERS", "1") or 1), address=os.environ.get("GEOMTL_DASK", ""))

    @property
    def parallel(self) -> bool:
        return self.workers > 1 or bool(self.address)

    def run(self, tasks: Sequence[Task], desc: str = "runs") -> list[Any]:
        """Every task's result, in order (a task that failed after its retries: its exception), with one progress
        bar across tasks."""
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tasks), desc=desc, leave=False)
        try:
            if self.address:
                return _dask(tasks, self, bar)
            if self.workers > 1:
                return _processes(tasks, self, bar)
            return [_serial(t, self.retries, bar) for t in tasks]
        finally:
            bar.close()


def _serial(task: Task, retries: int, bar) -> Any:
    fn, args = task
    for attempt in range(retries + 1):
        try:
            out = fn(*args)
            bar.update()
            return out
        except Exception as exc:
            if attempt == retries:
                bar.update()
                return exc
    raise AssertionError("unreachable")


def _limit_threads(threads: int, gpus) -> None:
    """Worker start: its share of the cores (torch, BLAS) and, on a GPU machine, a GPU of its own (taken from
    ``gpus``, a queue that holds each GPU once per worker it is to serve)."""
    if gpus is not None:  # before CUDA is first used (it reads the variable once)
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus.get()
    import torch

    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


def _gpu_queue(ctx, workers: int):
    """The GPUs of ``CUDA_VISIBLE_DEVICES`` dealt out to ``workers`` processes (round robin: a GPU serves
    several workers only when there are more workers than GPUs); ``None`` without GPUs."""
    gpus = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    if not gpus:
        return None
    q = ctx.Queue()
    for i in range(workers):
        q.put(gpus[i % len(gpus)].strip())
    return q


def _limited(threads: int, fn: Callable[..., Any], *args) -> Any:
    """A task with this worker's share of the cores, set in the thread that runs it (OpenMP's thread count is a
    per-thread setting, and a Dask worker runs tasks in threads of its own, restarted workers included)."""
    import torch

    torch.set_num_threads(threads)
    return fn(*args)


def _processes(tasks: Sequence[Task], ex: Executor, bar) -> list[Any]:
    """Local worker processes (spawned: no forked torch state); a pool broken by a killed worker is rebuilt and
    its unfinished tasks are submitted again, each at most ``retries`` more times."""
    results: dict[int, Any] = {}
    tries = dict.fromkeys(range(len(tasks)), 0)
    todo = list(range(len(tasks)))
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    while todo:  # each pool deals its GPUs out afresh (a killed worker's GPU goes to its replacement)
        with ProcessPoolExecutor(ex.workers, mp_context=ctx, initializer=_limit_threads,
                                 initargs=(ex.threads, _gpu_queue(ctx, ex.workers))) as pool:
            running = {pool.submit(tasks[i][0], *tasks[i][1]): i for i in todo}
            todo = []
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for f in done:
                    i = running.pop(f)
                    try:
                        results[i] = f.result()
                        bar.update()
                        continue
                    except BrokenProcessPool as exc:  # a worker died: every task of this pool is to be run again
                        err = exc
                    except Exception as exc:
                        err = exc
                    tries[i] += 1
                    if tries[i] > ex.retries:
                        results[i] = err
                        bar.update()
                    elif isinstance(err, BrokenProcessPool):
                        todo.append(i)
                    else:
                        running[pool.submit(tasks[i][0], *tasks[i][1])] = i
    return [results[i] for i in range(len(tasks))]


def _dask(tasks: Sequence[Task], ex: Executor, bar) -> list[Any]:
    """A Dask cluster (``address``: a scheduler, or ``local:N`` for N local worker processes); Dask reschedules
    the tasks of a worker that dies, and retries failed ones ``retries`` times. A run's data loader starts worker
    processes, so a cluster's Dask workers must not be daemonic (``DASK_DISTRIBUTED__WORKER__DAEMON=False``)."""
    import dask
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if ex.address.startswith("local:"):  # non-daemonic workers: a run's DataLoader starts processes of its own
        with dask.config.set({"distributed.worker.daemon": False}):
            cluster = LocalCluster(n_workers=int(ex.address.split(":", 1)[1]), threads_per_worker=1,
                                   processes=True, dashboard_address=None)
    try:
        with Client(cluster or ex.address) as client:
            futures = {client.submit(_limited, ex.threads, fn, *args, pure=False, retries=ex.retries): k
                       for k, (fn, args) in enumerate(tasks)}
            results: dict[int, Any] = {}
            for f in as_completed(futures):
                k = futures[f]
                results[k] = f.exception() if f.status == "error" else f.result()
                bar.update()
            return [results[k] for k in range(len(tasks))]
    finally:
        if cluster is not None:
            cluster.close()
