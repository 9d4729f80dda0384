"""Each scale builds into its own folders: a smoke build leaves the default report, its executed notebooks and
models/default byte-identical, and every page of a report built at another scale says which scale it is."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from geomtl_core.compendium.project import find_root
from geomtl_core.compendium.publish import publish_bundle
from geomtl_core.compendium.runner import KERNEL_NAME, book_dir, html_dir, prepare_book, run_all, scale_banner
from geomtl_core.compendium.scales import SCALES

import nbformat
import pytest
import yaml

ROOT = find_root(__file__)
JUPYTER_BOOK = Path(sys.executable).parent / "jupyter-book"


def outputs(scale: str, root: Path) -> list[Path]:
    """What building a scale's report writes: its executed notebooks and what jupyter-book writes below the
    book's ``_build/`` (HTML, doctrees, its execution folder), and the scale's own data, runs, results, model."""
    book = book_dir(scale, root)
    return [book / "experiments", html_dir(scale, root), book / "_build" / ".doctrees",
            book / "_build" / "jupyter_execute", root / "models" / scale, root / "runs" / scale,
            root / "results" / scale]


def test_scales_write_disjoint_folders():
    """No folder a scale's build writes is inside (or holds) a folder another scale writes, and the sources of
    a scale other than the default sit in a folder the default book's build excludes (``_build``)."""
    root = Path("/p")
    for a in SCALES:
        for b in SCALES:
            if a == b:
                continue
            for x in outputs(a, root):
                for y in outputs(b, root):
                    assert not x.is_relative_to(y) and not y.is_relative_to(x), (a, x, b, y)
        if a != "default":
            assert book_dir(a, root).relative_to(root / "book").parts[0] == "_build"
    assert html_dir("default", root) == root / "book" / "_build" / "html"  # the README's path
    assert book_dir("default", root) / "experiments" == root / "book" / "experiments"


def test_prepare_book_copies_pages_and_names_the_scale(tmp_path):
    """The copy has every page of book/ (not its builds or executed notebooks), the config of book/ with the
    scale in the title and a banner; the default scale's book is book/ itself."""
    dest = prepare_book("smoke", ROOT, tmp_path / "smoke")
    assert {p.name for p in dest.iterdir()} == {p.name for p in (ROOT / "book").iterdir()} - {"_build", "experiments"}
    config = yaml.safe_load((dest / "_config.yml").read_text())
    original = yaml.safe_load((ROOT / "book" / "_config.yml").read_text())
    assert config["title"] == original["title"] + " (smoke scale)"
    assert config["html"]["announcement"] == scale_banner("smoke") and "<b>smoke</b>" in scale_banner("smoke")
    assert {k: v for k, v in config.items() if k not in ("title", "html")} == \
        {k: v for k, v in original.items() if k not in ("title", "html")}
    assert prepare_book("default", ROOT) == ROOT / "book"


def _tree(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder``, by relative path."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _project(base: Path) -> Path:
    """A project with one tiny notebook, a book of two pages and a trained run per scale."""
    (base / "notebooks").mkdir(parents=True)
    (base / "_config.yml").write_text(
        "title: tiny\nonly_build_toc_files: true\nexecute:\n  execute_notebooks: 'off'\n"
        "html:\n  use_issues_button: false\n")
    (base / "book").mkdir()
    os.symlink("../_config.yml", base / "book" / "_config.yml")
    (base / "book" / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: experiments/01_tiny\n")
    (base / "book" / "intro.md").write_text("# Tiny\n\nA page.\n")
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('scale = "default"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# The tiny chapter"), params,
                nbformat.v4.new_code_cell("print('scale', scale)")]
    nb.metadata["kernelspec"] = {"display_name": "geomtl (.venv)", "language": "python", "name": KERNEL_NAME}
    nbformat.write(nb, base / "notebooks" / "01_tiny.ipynb")
    for scale in ("default", "smoke"):
        run = base / "runs" / scale / "mtl_s3"
        run.mkdir(parents=True)
        (run / "model.keras").write_text(f"model of {scale}")
    return base


def _build(book: Path) -> None:
    proc = subprocess.run([str(JUPYTER_BOOK), "build", str(book), "-W", "--keep-going"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.slow
def test_smoke_build_leaves_default_report_and_model_byte_identical(tmp_path):
    """`make book`'s three steps at default, then at smoke: the default book's executed notebooks, HTML and
    models/default are unchanged (sha256 of every file); the smoke report is in its own folder and every one of
    its pages shows the smoke banner, which no default page shows."""
    root = _project(tmp_path / "proj")
    run_all("default", root=root, progress=False)
    publish_bundle("default", root=root)
    _build(book_dir("default", root))
    default_html = html_dir("default", root)
    assert (default_html / "index.html").exists() and (root / "book" / "experiments" / "01_tiny.ipynb").exists()
    before = {p: _tree(root / p) for p in ("book/experiments", "book/_build/html", "models/default")}

    records = run_all("smoke", root=root, progress=False)
    assert [r["notebook"] for r in records] == ["01_tiny.ipynb"]
    publish_bundle("smoke", root=root)
    _build(book_dir("smoke", root))
    assert {p: _tree(root / p) for p in before} == before
    assert (root / "models" / "smoke" / "model.keras").read_text() == "model of smoke"

    smoke_html = html_dir("smoke", root)
    assert smoke_html == root / "book" / "_build" / "smoke" / "_build" / "html"
    pages = [p for p in sorted(smoke_html.rglob("*.html"))  # (index.html only redirects to the first page)
             if "_static" not in p.parts and 'http-equiv="Refresh"' not in p.read_text()]
    assert {"intro.html", "01_tiny.html", "genindex.html", "search.html"} <= {p.name for p in pages}
    for page in pages:
        assert "Built at the <b>smoke</b> scale" in page.read_text(), page.name
    for page in (p for p in default_html.rglob("*.html") if "_static" not in p.parts):
        assert "Built at the" not in page.read_text(), page.name
    executed = nbformat.read(book_dir("smoke", root) / "experiments" / "01_tiny.ipynb", as_version=4)
    assert "scale smoke" in "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
