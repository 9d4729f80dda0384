"""Should the book's runs go to one process or to several on this machine? The wall time of the same kind of runs
(the single-task cell at 100% of one model on the export's split, as the book trains it: ``--model frozen`` or
``cnn_w25``, the small CNN on decoded images; each run with its own seed)
executed by ``runner``'s executor in this process (``--workers 1``, torch using every core) and in ``--workers N``
processes (the cores shared out), side by side in one invocation, with the CPU and the load.

Both phases run in one throwaway project that links the scale's proxy export; a warm-up run first fills the
feature cache (as the book's first run of a share does), and each phase trains runs of its own seeds, so nothing
is reused from the other. The runner's ``--workers`` default should be the faster of the two.

Run: .venv/bin/python benchmarks/bench_workers.py [--workers 2] [--runs 4] [--scale default] [--model cnn_w25]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--runs", type=int, default=4, help="runs per phase (folds of the cell, then repeated)")
    ap.add_argument("--scale", default="default")
    ap.add_argument("--model", default="frozen", help="the model of the single-task cell at 100%% (grid's name)")
    args = ap.parse_args()

    from geomtl_core.compendium import grid as G
    from geomtl_core.compendium.design import Cell
    from geomtl_core.compendium.executors import Executor
    from geomtl_core.compendium.provision import data_dir, ensure_folds
    from geomtl_core.compendium.runs import RunUnit, run_once
    from geomtl_core.config import deep_merge

    ensure_folds(args.scale, ROOT)
    export = data_dir(args.scale, ROOT)
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        project = Path(tmp)
        (project / "data").mkdir()
        (project / "data" / export.name).symlink_to(export)
        (project / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
        ensure_folds(args.scale, project)
        # peek: the scale's recipe as declared, without training its validation choice first
        base = G.cell_units(Cell(args.model, 1.0, "st"), args.scale, project, peek=True)

        split = next(u for u in base if u.fold is None)  # one training set: every phase reads the same cache

        def units(label: str, seed0: int) -> list[RunUnit]:
            return [RunUnit(f"bench-{label}-{i}", args.scale,
                            deep_merge(split.overrides, {"train": {"seed": seed0 + i}}), "bench", seed0 + i, None)
                    for i in range(args.runs)]

        warm = units("warm", 4242)[0]
        run_once(warm.name, args.scale, warm.overrides, project)
        times = {}
        for n, seed0 in ((1, 100), (args.workers, 200)):
            tasks = [u.task(project) for u in units(f"w{n}", seed0)]
            t0 = time.perf_counter()
            out = Executor(workers=n).run(tasks, desc=f"{n} worker(s)")
            times[n] = time.perf_counter() - t0
            failed = [r for r in out if isinstance(r, BaseException)]
            if failed:
                raise SystemExit(f"--workers {n}: {len(failed)} runs failed: {failed[0]!r}")
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    print(f"{cpu}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end; scale {args.scale}, "
          f"{args.runs} {args.model} runs per phase")
    print(f"{'workers':<10}{'wall s':>10}{'s per run':>12}{'vs 1 worker':>14}")
    for n, t in times.items():
        print(f"{n:<10}{t:>10.1f}{t / args.runs:>12.1f}{t / times[1]:>14.2f}")


if __name__ == "__main__":
    main()
