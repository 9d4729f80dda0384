"""Run every experiment notebook with papermill at a named scale, skipping unchanged ones.

Each scale has its own book, so that building one never touches another's report (:func:`book_dir`): the
default scale's is ``book/`` itself (executed notebooks in ``book/experiments/``, the report built into
``book/_build/html/``); any other scale's is a copy of ``book/``'s pages in ``book/_build/<scale>/``
(:func:`prepare_book`; notebooks in ``book/_build/<scale>/experiments/``, the report in
``book/_build/<scale>/_build/html/``) whose every page carries a banner naming the scale. Executed copies
go to the scale's ``experiments/`` (the book renders them without executing) with one JSON record per run
(parameters, code hash, git commit, package versions, wall time), ``experiments/<name>.run.json``.

The project root (where ``notebooks/``, ``book/`` and the ``data/``, ``runs/``, ``results/`` folders
live) is found from the working directory, not from where the package is installed: the nearest
folder at or above it holding ``_config.yml`` and ``notebooks/`` (:func:`find_root`), or ``--root``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

from geomtl_core.compendium.project import (
    ProjectRootNotFound,
    find_root,
    git_commit,
    package_versions,
    resolve_root,
)
from geomtl_core.compendium.scales import SCALES, scale_params

KERNEL_NAME = "geomtl"  # the venv's kernelspec, installed by `make install`; the notebooks' metadata names it
REPORT_SCALE = "default"  # the scale whose report is the project's (README, book/_build/html)


def book_dir(scale: str, root: Path) -> Path:
    """The book a scale builds: ``book/`` for the default scale, ``book/_build/<scale>/`` for any other
    (its executed notebooks in ``experiments/`` below it, its HTML in ``_build/html/`` below it).

    >>> book_dir("default", Path("p")).as_posix(), book_dir("smoke", Path("p")).as_posix()
    ('p/book', 'p/book/_build/smoke')
    """
    scale_params(scale)
    book = Path(root) / "book"
    return book if scale == REPORT_SCALE else book / "_build" / scale


def html_dir(scale: str, root: Path) -> Path:
    """Where ``jupyter-book build`` writes a scale's report: ``_build/html`` below :func:`book_dir`."""
    return book_dir(scale, root) / "_build" / "html"


def scale_banner(scale: str) -> str:
    """The line every page of a report built at a scale other than the default shows at its top."""
    p = scale_params(scale)
    seeds = len(p["seeds"])
    size = f"{p['n']:,} proxy locations" if p["n"] else "all proxy locations"
    return (f"Built at the <b>{scale}</b> scale ({size}, {seeds} seed{'s' if seeds > 1 else ''}), not the default "
            f"one: its numbers are not the project's results, which are those of the default scale's report "
            f"(book/_build/html).")


def prepare_book(scale: str, root: Path, dest: Path | None = None) -> Path:
    """Copy ``book/``'s pages (all but ``_build/`` and ``experiments/``) to the book of a scale other than the
    default (``dest``, default :func:`book_dir`), with its ``_config.yml`` naming the scale in the title and in
    a banner on every page (``html.announcement``); returns the copy. Executed notebooks already in its
    ``experiments/`` stay. The default scale's book is ``book/`` itself: returned unchanged."""
    import yaml

    src = Path(root) / "book"
    if dest is None:
        if scale == REPORT_SCALE:
            return src
        dest = book_dir(scale, root)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.name in ("_build", "experiments", "_config.yml"):
            continue
        target = dest / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            shutil.copy2(item, target)
    config = yaml.safe_load((src / "_config.yml").read_text()) or {}
    if scale != REPORT_SCALE:
        config["title"] = f"{config.get('title', 'geomtl')} ({scale} scale)"
        config.setdefault("html", {})["announcement"] = scale_banner(scale)
    (dest / "_config.yml").write_text(f"# Written by geomtl_core.compendium.runner from book/_config.yml for the "
                                      f"{scale} scale: edit that one.\n" + yaml.safe_dump(config, sort_keys=False))
    return dest


def code_hash(paths: list[Path]) -> str:
    """sha256 over the bytes of the given files (sorted by path)."""
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def library_files(root: Path | None = None) -> list[Path]:
    """The library sources whose change invalidates every executed notebook: the package that
    runs them (wherever it is installed), plus the project's own ``geomtl_core/`` if it has one."""
    files = set(Path(__file__).resolve().parents[1].rglob("*.py"))
    if root is not None:
        files |= {p.resolve() for p in (Path(root) / "geomtl_core").rglob("*.py")}
    return sorted(files)


def notebook_key(notebook: Path, parameters: dict, root: Path | None = None) -> str:
    """What an executed copy depends on: notebook, parameters and library code."""
    h = hashlib.sha256()
    h.update(notebook.read_bytes())
    h.update(json.dumps(parameters, sort_keys=True).encode())
    h.update(code_hash(library_files(root)).encode())
    return h.hexdigest()


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


_REDRAWN = re.compile(r"\r[^\r\n]*")


def strip_progress(nb) -> int:
    """Drop progress bars from an executed notebook's outputs, so that the book shows results, not bars.

    A progress bar (tqdm, as the library's export, feature and evaluation loops draw them) redraws its
    line with ``\\r`` on stderr: every such redrawn segment is removed, and a stderr output left blank (as the
    newline a closed bar prints) is dropped. Returns the number of outputs changed or dropped.
    """
    changed = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                text = out["text"] if isinstance(out["text"], str) else "".join(out["text"])
                clean = _REDRAWN.sub("", text)
                if not clean.strip():
                    changed += 1
                    continue
                if clean != text:
                    out["text"] = clean
                    changed += 1
            kept.append(out)
        cell["outputs"] = kept
    return changed


_PROGRESS = re.compile(r"\r|\d+/\d+ \[|it/s\]|s/it\]|━|Epoch \d+/\d+|\d+%\|")
_ABSOLUTE = re.compile(r"(?<![\w.~])/(?:home|tmp|work|root|Users|var|opt|mnt|srv)/")


def report_problems(nb, root: Path | None = None) -> list[str]:
    """What a reader should never see in an executed notebook's outputs: progress bars (tqdm, Keras progbar)
    and absolute paths of the machine that built it (``root`` itself included). One line per finding."""
    problems = []
    for k, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            texts = [out.get("text", "")] if out.get("output_type") == "stream" else \
                [v for t, v in out.get("data", {}).items() if t.startswith("text/")]
            for text in texts:
                text = text if isinstance(text, str) else "".join(text)
                if _PROGRESS.search(text):
                    problems.append(f"cell {k}: progress output {_PROGRESS.search(text).group()!r}")
                if _ABSOLUTE.search(text) or (root is not None and str(root) in text):
                    problems.append(f"cell {k}: absolute path in output")
    return problems


def fold_code(nb) -> None:
    """Present an executed notebook as a report: every code cell's input collapsed (``hide-input``), the
    parameters cells (the notebook's own and papermill's injected one) removed from the page."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = list(cell.metadata.get("tags", []))
        wanted = "remove-cell" if {"parameters", "injected-parameters"} & set(tags) else "hide-input"
        if wanted not in tags:
            cell.metadata["tags"] = [*tags, wanted]


def machine() -> str:
    """The CPU a build ran on, as its records name it: "AMD EPYC 7B13 (2 cores)" (``/proc/cpuinfo`` where it
    exists, else the platform's processor string)."""
    import platform

    model = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")
    if info.exists():
        names = [ln.split(":", 1)[1].strip() for ln in info.read_text().splitlines() if ln.startswith("model name")]
        model = names[0] if names else model
    return f"{model} ({os.cpu_count()} cores)"


ANSWER_PAGES = ("README.md", "book/intro.md")
"""The pages whose answer block :func:`write_readme_answer` generates (the README and the book's first page)."""


def write_readme_answer(root: Path, scale: str = REPORT_SCALE, pages: tuple[str, ...] = ANSWER_PAGES) -> str:
    """Rewrite the generated answer (between :data:`~geomtl_core.compendium.prose.README_START` and
    ``README_END``) of the README and the book's first page from the scale's ``results/<scale>/verdict.csv``
    and its notebooks' run records; returns it. A page without the markers, or a scale without a verdict, is an
    error (nothing is written)."""
    from geomtl_core.compendium.prose import README_END, README_START, readme_answer

    import pandas as pd

    texts = {}
    for name in pages:
        path = Path(root) / name
        if not path.exists():
            continue
        texts[path] = path.read_text()
        if README_START not in texts[path] or README_END not in texts[path]:
            raise ValueError(f"{path} has no generated-answer markers ({README_START} ... {README_END})")
    verdict_csv = Path(root) / "results" / scale / "verdict.csv"
    if not verdict_csv.exists():
        raise ValueError(f"no verdict at scale={scale} ({verdict_csv}): run `make book` first")
    records = [json.loads(f.read_text()) for f in sorted((book_dir(scale, root) / "experiments").glob("*.run.json"))]
    block = readme_answer(pd.read_csv(verdict_csv), records)
    for path, text in texts.items():
        head, rest = text.split(README_START, 1)
        new = f"{head}{README_START}\n{block}\n{README_END}{rest.split(README_END, 1)[1]}"
        if new != text:
            path.write_text(new)
    return block


def kernel_name() -> str:
    """The kernel the notebooks run on: the kernelspec ``geomtl`` when it runs this interpreter's environment
    (``make install`` installs it into the venv), else ipykernel's ``python3`` of this interpreter."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel:
        spec = None
    if spec is not None and Path(spec.argv[0]).parent.resolve() == Path(sys.executable).parent.resolve():
        return KERNEL_NAME
    print(f"[runner] kernelspec {KERNEL_NAME!r} is not installed for {sys.executable} (`make install` installs it); "
          "using python3", file=sys.stderr)
    return "python3"


def run_all(
    scale: str,
    notebooks_dir: Path | None = None,
    out_dir: Path | None = None,
    force: bool = False,
    root: Path | None = None,
    progress: bool = True,
) -> list[dict]:
    """Execute each notebook in order; return one record per notebook (ran or skipped).

    The executed copies go to ``out_dir``, by default the ``experiments/`` folder of the scale's own book
    (:func:`book_dir`, prepared by :func:`prepare_book` for a scale other than the default). The kernels run
    in the project ``root`` (default: the project holding ``notebooks_dir``, or the working directory's);
    ``progress`` shows one bar per notebook (cells done) on stderr, never in the executed copies.
    """
    import nbformat
    import papermill as pm

    scale_params(scale)  # an unknown scale is an error naming the valid ones
    root = resolve_root(root) if root is not None else find_root(notebooks_dir)
    notebooks_dir = root / "notebooks" if notebooks_dir is None else Path(notebooks_dir)
    out_dir = prepare_book(scale, root) / "experiments" if out_dir is None else Path(out_dir)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # inherited by the kernels (see geomtl_core/__init__)
    out_dir.mkdir(parents=True, exist_ok=True)
    kernel = None
    records = []
    for nb in sorted(notebooks_dir.glob("[0-9]*.ipynb")):
        params = {"scale": scale}
        key = notebook_key(nb, params, root)
        record_path = out_dir / f"{nb.stem}.run.json"
        executed = out_dir / nb.name
        if not force and executed.exists() and record_path.exists():
            old = json.loads(record_path.read_text())
            if old.get("key") == key:
                print(f"[runner] {nb.name}: unchanged, skipped")
                records.append({**old, "skipped": True})
                continue
        print(f"[runner] {nb.name}: executing at scale={scale}", flush=True)
        kernel = kernel or kernel_name()
        start = time.perf_counter()
        pm.execute_notebook(
            str(nb), str(executed), parameters=params, cwd=str(root), kernel_name=kernel,
            progress_bar={"desc": nb.stem} if progress else False,
        )
        done = nbformat.read(executed, as_version=4)
        strip_progress(done)
        fold_code(done)
        nbformat.write(done, executed)
        check_figures(executed)
        problems = report_problems(done, root)
        if problems:
            raise RuntimeError(f"{executed.name} shows what a report must not: " + "; ".join(problems[:5]))
        record = {
            "notebook": nb.name,
            "parameters": params,
            "key": key,
            "git_commit": git_commit(root),
            "versions": package_versions(),
            "machine": machine(),
            "wall_time_s": round(time.perf_counter() - start, 1),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        record_path.write_text(json.dumps(record, indent=2))
        records.append(record)
    return records


def main(argv: list[str] | None = None) -> int:
    """``python -m geomtl_core.compendium.runner --scale default [--root PROJECT]``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", default="default", choices=list(SCALES))
    p.add_argument("--root", type=Path, default=None,
                   help="the project folder (holding _config.yml and notebooks/); default: found at or above "
                        "the working directory")
    p.add_argument("--notebooks", type=Path, default=None, help="default: ROOT/notebooks")
    p.add_argument("--out", type=Path, default=None,
                   help="default: the scale's book's experiments/ (ROOT/book/experiments for the default scale, "
                        "ROOT/book/_build/SCALE/experiments for another)")
    p.add_argument("--book-dir", action="store_true",
                   help="only print the folder of the scale's book (what `jupyter-book build` builds) and exit")
    p.add_argument("--force", action="store_true", help="re-execute even unchanged notebooks")
    p.add_argument("--readme", action="store_true",
                   help="only rewrite the README's generated answer from the scale's results and run records")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no per-notebook progress bar on stderr")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan (every training run, cached or to train) and its estimated time; train "
                        "nothing, write nothing (not even the proxy export: its sizes are then estimated)")
    p.add_argument("--workers", type=int, default=None,
                   help="train the grid's independent runs on N local processes (each with its share of the cores); "
                        "default: the scale's train_workers (2 at the default scale, measured faster on 2 cores)")
    p.add_argument("--dask", default="",
                   help="train them on a Dask cluster: a scheduler address (tcp://HOST:8786) or local:N")
    args = p.parse_args(argv)
    try:
        root = resolve_root(args.root)
    except ProjectRootNotFound as e:
        p.error(str(e))
    if args.book_dir:
        print(os.path.relpath(book_dir(args.scale, root)))
        return 0
    if args.readme:
        try:
            print(write_readme_answer(root, args.scale))
        except ValueError as e:
            p.error(str(e))
        return 0
    if args.workers is None:
        from geomtl_core.compendium.scales import scale_params

        args.workers = int(scale_params(args.scale).get("train_workers", 1))
    if args.dry_run:
        from geomtl_core.compendium.plan import plan, summary

        table = plan(args.scale, root)
        print(f"[runner] plan at scale={args.scale} in {root} (dry run: nothing trained, nothing written):\n"
              + summary(table, max(args.workers, 1)))
        return 0
    if args.workers < 1:
        p.error("--workers must be at least 1")
    os.environ["GEOMTL_WORKERS"], os.environ["GEOMTL_DASK"] = str(args.workers), args.dask  # the notebooks' kernels
    records = run_all(args.scale, args.notebooks, args.out, force=args.force, root=root, progress=args.progress)
    print(f"[runner] {len(records)} notebook(s) at scale={args.scale} in {root}; "
          f"the report builds from {book_dir(args.scale, root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
