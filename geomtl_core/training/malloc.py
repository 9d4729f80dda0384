"""glibc malloc settings for CPU training: keep freed batch-sized buffers for reuse instead of returning them.

By default glibc serves large allocations with fresh ``mmap`` pages and trims the heap top back to the OS,
so every step's activations (megabytes each) are page-faulted in again: on this project's CPU runs that
cost ~12% of the small CNN's train step (``benchmarks/bench_models.py``). Raising the mmap threshold (to 1 GiB,
or glibc's older ceiling of 32 MiB where that is refused) and the trim threshold above any step's working set
makes them heap memory that is reused. The price: the process keeps its peak memory until it exits.
Only for training on a CPU: on a GPU the activations live in the accelerator's allocator, and the host heap
would only keep its peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

from geomtl_core.models.fast_path import current_device

__all__ = ["keep_freed_memory"]

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLDS = (1024**3, 32 * 1024**2)  # glibc before 2.26 refuses more than 32 MiB on 64-bit systems
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int
TOP_PAD = 64 * 1024 * 1024

_done: bool | None = None


def keep_freed_memory(device: str | None = None) -> bool:
    """Apply the settings above once per process (forked DataLoader workers inherit them) when training runs
    on the CPU (``device``: "cpu", "cuda:0", ...; None: Keras' torch device); True where they took effect,
    False on another device or off glibc Linux (other allocators keep their own policy)."""
    global _done
    if (device or current_device()).split(":")[0] != "cpu":
        return False  # nothing applied, nothing remembered: a later CPU run of the process may still apply them
    if _done is not None:
        return _done
    _done = False
    if not sys.platform.startswith("linux"):
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return _done
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mmap = any(mallopt(M_MMAP_THRESHOLD, value) == 1 for value in MMAP_THRESHOLDS)
    _done = mmap and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and mallopt(M_TOP_PAD, TOP_PAD) == 1
    return _done
