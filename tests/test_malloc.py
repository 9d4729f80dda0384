"""``training.malloc.keep_freed_memory``: its effect on glibc's heap (not only mallopt's return codes), and
that it acts only when training runs on a CPU. Each test names the breakage it catches."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                                reason="glibc's allocator only")

PROBE = """
import ctypes, ctypes.util, json, sys
from geomtl_core.training import malloc
import torch

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
if not hasattr(libc, "mallinfo2"):
    print(json.dumps(None)); sys.exit()
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                  "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
applied = malloc.keep_freed_memory(sys.argv[1]) if sys.argv[1] != "none" else None
mib = 1024 ** 2
rounds = []
for _ in range(3):  # a 48 MiB activation-sized buffer per "step" (glibc mmaps anything above 32 MiB by default)
    before = libc.mallinfo2()
    x = torch.empty(48 * mib // 4)
    x.fill_(1.0)
    during = libc.mallinfo2()
    del x
    after = libc.mallinfo2()
    rounds.append({"mmapped": (during.hblkhd - before.hblkhd) / mib, "kept": after.arena / mib})
print(json.dumps({"applied": applied, "rounds": rounds}))
"""


def _probe(device: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, device], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result is None:
        pytest.skip("glibc without mallinfo2")
    return result


def test_on_a_cpu_large_buffers_come_from_the_heap_and_stay_there():
    """Catches settings that no longer take effect (a wrong mallopt constant or value, a threshold glibc caps):
    with them a 48 MiB buffer is heap memory, kept after it is freed, so the next step's buffer reuses its
    pages; without them (glibc's defaults) every such buffer is a fresh mmap, returned when freed."""
    stock, kept = _probe("none"), _probe("cpu")
    assert kept["applied"] is True
    assert all(r["mmapped"] >= 48 for r in stock["rounds"])  # the default: mapped per step, and unmapped after
    assert all(r["mmapped"] == 0 for r in kept["rounds"])
    assert all(r["kept"] >= 48 for r in kept["rounds"])


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "mps"])
def test_off_the_cpu_nothing_changes(device):
    """Catches the process-wide allocator change applied when a GPU is the device (the host heap would keep
    its peak for nothing: activations live in the accelerator's own allocator)."""
    result = _probe(device)
    assert result["applied"] is False
    assert all(r["mmapped"] >= 48 for r in result["rounds"])
