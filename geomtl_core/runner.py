"""Run every experiment notebook with papermill at a named scale, skipping unchanged ones.

Executed copies go to ``book/experiments/`` (the book renders them without executing) and
one JSON record per run (parameters, code hash, git commit, package versions, wall time)
to ``book/experiments/<name>.run.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

SCALES = ("smoke", "default", "full")
ROOT = Path(__file__).resolve().parent.parent
RECORDED_PACKAGES = ("geomtl", "torch", "torchvision", "keras", "numpy", "pandas", "papermill", "jupyter-book")


def code_hash(paths: list[Path]) -> str:
    """sha256 over the bytes of the given files (sorted by path)."""
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def library_files(root: Path = ROOT) -> list[Path]:
    """The library sources whose change invalidates every executed notebook."""
    return sorted((root / "geomtl_core").rglob("*.py"))


def run_key(notebook: Path, parameters: dict, root: Path = ROOT) -> str:
    """What an executed copy depends on: notebook, parameters and library code."""
    h = hashlib.sha256()
    h.update(notebook.read_bytes())
    h.update(json.dumps(parameters, sort_keys=True).encode())
    h.update(code_hash(library_files(root)).encode())
    return h.hexdigest()


def git_commit(root: Path = ROOT) -> str:
    """Current commit (with ``-dirty`` when the tree has changes), or ``unknown``."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape results."""
    out = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def check_figures(executed: Path) -> int:
    """Every cell tagged ``figure`` must have produced an image; returns the number of images."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    images = 0
    for k, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        has = any("image/png" in o.get("data", {}) for o in cell.get("outputs", []))
        images += has
        if "figure" in cell.metadata.get("tags", []) and not has:
            raise RuntimeError(f"{executed.name}: cell {k} should show a figure but produced none")
    return images


def run_all(scale: str, notebooks_dir: Path, out_dir: Path, force: bool = False) -> list[dict]:
    """Execute each notebook in order; return one record per notebook (ran or skipped)."""
    import os

    import papermill as pm

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # inherited by the kernels (see geomtl_core/__init__)
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for nb in sorted(notebooks_dir.glob("[0-9]*.ipynb")):
        params = {"scale": scale}
        key = run_key(nb, params)
        record_path = out_dir / f"{nb.stem}.run.json"
        executed = out_dir / nb.name
        if not force and executed.exists() and record_path.exists():
            old = json.loads(record_path.read_text())
            if old.get("key") == key:
                print(f"[runner] {nb.name}: unchanged, skipped")
                records.append({**old, "skipped": True})
                continue
        print(f"[runner] {nb.name}: executing at scale={scale}", flush=True)
        start = time.perf_counter()
        pm.execute_notebook(
            str(nb), str(executed), parameters=params, cwd=str(ROOT), kernel_name="python3", progress_bar=False
        )
        check_figures(executed)
        record = {
            "notebook": nb.name,
            "parameters": params,
            "key": key,
            "git_commit": git_commit(),
            "versions": package_versions(),
            "wall_time_s": round(time.perf_counter() - start, 1),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        record_path.write_text(json.dumps(record, indent=2))
        records.append(record)
    return records


def main(argv: list[str] | None = None) -> int:
    """``python -m geomtl_core.runner --scale default``."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--scale", default="default", choices=SCALES)
    p.add_argument("--notebooks", type=Path, default=ROOT / "notebooks")
    p.add_argument("--out", type=Path, default=ROOT / "book" / "experiments")
    p.add_argument("--force", action="store_true", help="re-execute even unchanged notebooks")
    args = p.parse_args(argv)
    records = run_all(args.scale, args.notebooks, args.out, force=args.force)
    print(f"[runner] {len(records)} notebook(s) at scale={args.scale}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
