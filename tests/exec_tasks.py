"""Tasks for the executor tests, importable by spawned worker processes (and pickled by value for Dask)."""

import os
from pathlib import Path


def square(x: int) -> int:
    return x * x


def die_once(marker: str) -> int:
    """Kills its worker process the first time (as a killed or crashed worker), returns 42 after."""
    path = Path(marker)
    if not path.exists():
        path.write_text("died")
        os._exit(1)
    return 42


def always_fail(counter: str) -> None:
    """Fails every time, counting its attempts in a file."""
    path = Path(counter)
    path.write_text(str(int(path.read_text()) + 1 if path.exists() else 1))
    raise ValueError("this run always fails")


def gpu_of_worker(delay: float) -> tuple[int, str]:
    """(pid, the GPU this worker process was given), after ``delay`` seconds (so that every worker gets a task)."""
    import time

    time.sleep(delay)
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES", "")
