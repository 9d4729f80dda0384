"""What one run of the book costs, end to end, before and after a change: the wall time of ``runs.run_once`` (train,
evaluate validation and test, score the hybrid where the cell does, publish) for a frozen-backbone run on a
cross-validation fold and a tuned run on the split, each with every feature it reads already cached (a run of
another seed of the same fold first fills the cache, as the book's first run of a share does).

Each checkout runs in its own process, in its own throwaway project that links the scale's proxy export and
keeps its own feature cache; the two checkouts run one after the other on the same machine in one invocation,
and the output puts their times and the ratio side by side, with the CPU and the load.

Run: .venv/bin/python benchmarks/bench_run_cost.py --before <revision> [--after <revision>] [--scale default] [--fold 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DRIVER = r"""
import json, sys, time
from pathlib import Path
from geomtl_core.compendium import grid as G, runs as R
try:  # where a checkout keeps the scale's data (runs.py before it was split by job)
    from geomtl_core.compendium.provision import ensure_folds
except ImportError:
    from geomtl_core.compendium.runs import ensure_folds
from geomtl_core.compendium.design import cells
from geomtl_core.config import deep_merge

scale, fold, project = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
ensure_folds(scale, project)
by_name = {c.name: c for c in cells(scale)}
out = {}
for label, cell, want in (("frozen", "st_hier", fold), ("tuned", "tuned-f100-st", None)):
    unit = next(u for u in G.cell_units(by_name[cell], scale, project) if u.fold == want)
    warm = deep_merge(unit.overrides, {"train": {"seed": 4242}})
    t0 = time.perf_counter()
    R.run_once(f"bench-warm-{label}", scale, warm, project)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = R.run_once(f"bench-{label}", scale, unit.overrides, project)
    out[label] = {"wall_s": round(time.perf_counter() - t0, 1), "first_run_s": round(first, 1),
                  "train_s": res["train_time_s"], "acc_750km": res["test"]["acc_750km"] if "acc_750km" in
                  res["test"] else None}
print("RESULT " + json.dumps(out))
"""


def _measure(checkout: Path, scale: str, fold: int) -> dict:
    """Run the driver with ``checkout``'s library in a fresh project linking the scale's export."""
    sys.path.insert(0, str(ROOT))
    from geomtl_core.compendium.provision import data_dir, ensure_folds

    ensure_folds(scale, ROOT)
    export = data_dir(scale, ROOT)
    with tempfile.TemporaryDirectory(prefix="bench-run-cost-") as tmp:
        project = Path(tmp)
        (project / "data").mkdir()
        (project / "data" / export.name).symlink_to(export)
        (project / "pyproject.toml").write_text((checkout / "pyproject.toml").read_text())
        env = {**os.environ, "PYTHONPATH": str(checkout), "GEOMTL_WORKERS": "0"}
        done = subprocess.run([sys.executable, "-c", DRIVER, scale, str(fold), str(project)], cwd=checkout, env=env,
                              capture_output=True, text=True, check=False)
        line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
        if done.returncode or not line:
            raise SystemExit(f"{checkout}: driver failed\n{done.stderr[-3000:]}")
        return json.loads(line[-1][len("RESULT "):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="git revision to compare with (checked out in a worktree)")
    ap.add_argument("--after", default="", help="git revision to measure (default: the working tree)")
    ap.add_argument("--scale", default="default")
    ap.add_argument("--fold", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-revisions-") as tmp:
        trees = {"before": Path(tmp) / "before", "after": Path(tmp) / "after" if args.after else ROOT}
        for which, rev in (("before", args.before), ("after", args.after)):
            if rev:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(trees[which]), rev],
                               check=True, capture_output=True)
        try:
            times = {which: _measure(tree, args.scale, args.fold) for which, tree in trees.items()}
        finally:
            for tree in trees.values():
                if tree != ROOT:
                    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    print(f"{cpu}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end; scale {args.scale}, "
          f"before = {args.before}, after = {args.after or 'the working tree'}")
    print(f"{'run':<8}{'before s':>10}{'after s':>10}{'after/before':>14}   (first run of the share: before, after)")
    for run in ("frozen", "tuned"):
        b, a = times["before"][run], times["after"][run]
        print(f"{run:<8}{b['wall_s']:>10.1f}{a['wall_s']:>10.1f}{a['wall_s'] / b['wall_s']:>14.2f}   "
              f"({b['first_run_s']:.1f}, {a['first_run_s']:.1f}); test acc@750 {b['acc_750km']} vs {a['acc_750km']}")
    print(json.dumps(times))


if __name__ == "__main__":
    main()
