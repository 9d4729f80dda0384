"""Notebooks rerun with the papermill command as documented, from the project root or notebooks/; the
runner finds the project from the working directory, shows progress in the terminal, not in the book."""

import json
import os
import subprocess
import sys
from pathlib import Path

from geomtl_core.compendium import project, runner
from geomtl_core.compendium.runner import KERNEL_NAME, ProjectRootNotFound, find_root, run_all, strip_progress

import nbformat
import pytest

ROOT = find_root(__file__)
PAPERMILL = Path(sys.executable).parent / "papermill"


def make_project(base: Path) -> Path:
    """A minimal project folder: ``_config.yml`` and ``notebooks/`` (and a book/ with its own _config.yml link)."""
    (base / "notebooks").mkdir(parents=True)
    (base / "_config.yml").write_text("title: t\n")
    (base / "book").mkdir()
    (base / "book" / "_config.yml").write_text("title: t\n")
    return base


def test_find_root_from_subfolder(tmp_path, monkeypatch):
    """Found at or above the working directory; a folder with _config.yml but no notebooks/ is not a root."""
    proj = make_project(tmp_path / "proj")
    deep = proj / "notebooks" / "a" / "b"
    deep.mkdir(parents=True)
    assert find_root(deep) == proj.resolve()
    assert find_root(proj / "book") == proj.resolve()
    assert find_root(proj / "_config.yml") == proj.resolve()  # a file: its folder
    monkeypatch.chdir(deep)
    assert find_root() == proj.resolve()
    assert project.ROOT == proj.resolve()  # `from geomtl_core.compendium.project import ROOT`
    assert ROOT == Path(__file__).resolve().parents[1]


def test_find_root_clear_error_when_absent(tmp_path, monkeypatch, capsys):
    """No project above: a clear error, from the function and from the runner's CLI (also for a bad --root)."""
    lone = tmp_path / "elsewhere" / "sub"
    lone.mkdir(parents=True)
    (tmp_path / "elsewhere" / "_config.yml").write_text("title: t\n")  # half a project is not one
    monkeypatch.chdir(lone)
    with pytest.raises(ProjectRootNotFound, match=r"no geomtl project at or above .*_config\.yml and notebooks/"):
        find_root()
    with pytest.raises(ProjectRootNotFound):
        project.ROOT  # noqa: B018
    with pytest.raises(SystemExit) as e:
        runner.main(["--scale", "smoke"])
    assert e.value.code == 2 and "--root" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        runner.main(["--scale", "smoke", "--root", str(lone)])
    assert e.value.code == 2 and "is not a geomtl project root" in capsys.readouterr().err


def test_strip_progress_keeps_results_drops_bars():
    """tqdm's redrawn lines on stderr go; stdout, warnings and other outputs stay."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="\rexport:   0%|          | 0/3 [00:00<?, ?img/s]"),
        nbformat.v4.new_output("stream", name="stderr", text="\rexport: 100%|##########| 3/3 [00:01<00:00]"),
        nbformat.v4.new_output("stream", name="stdout", text="result 42\n"),
        nbformat.v4.new_output("stream", name="stderr", text="\n"),
        nbformat.v4.new_output("stream", name="stderr", text="UserWarning: kept\n\rfeat: 50%|#####     | 1/2\n"),
        nbformat.v4.new_output("execute_result", data={"text/plain": "1"}, execution_count=1),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), cell]
    assert strip_progress(nb) == 4
    assert [o.get("text") for o in cell.outputs] == ["result 42\n", "UserWarning: kept\n\n", None]
    assert strip_progress(nb) == 0


def test_every_notebook_is_papermill_ready():
    """First code cell tagged `parameters` sets `scale`; the kernel is the project's kernelspec."""
    notebooks = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    assert len(notebooks) == 8
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        first = next(c for c in nb.cells if c.cell_type == "code")
        assert "parameters" in first.metadata.get("tags", []), path.name
        assert first.source.startswith('scale = "default"'), path.name
        assert nb.metadata.kernelspec.name == KERNEL_NAME, path.name


def _tiny_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('scale = "default"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        params,
        nbformat.v4.new_code_cell(
            "import os, sys\nfrom tqdm import tqdm\n\nfor _ in tqdm(range(3), desc='work', file=sys.stderr):\n"
            "    pass\nfrom pathlib import Path\nfrom geomtl_core.compendium.project import ROOT\n"
            "print('scale', scale, 'root', ROOT.name, 'cwd is root', Path(os.getcwd()).resolve() == ROOT.resolve())"
        ),
    ]
    nb.metadata["kernelspec"] = {"display_name": "geomtl (.venv)", "language": "python", "name": KERNEL_NAME}
    return nb


@pytest.mark.slow
def test_runner_finds_root_from_cwd_and_shows_progress_in_terminal_only(tmp_path, monkeypatch, capfd):
    """From a subfolder of a project the runner runs its notebooks in the project root, draws a per-notebook
    bar on stderr, and the executed copy keeps the printed result without the notebook's own tqdm bar."""
    proj = make_project(tmp_path / "proj")
    nbformat.write(_tiny_notebook(), proj / "notebooks" / "01_tiny.ipynb")
    monkeypatch.chdir(proj / "notebooks")
    records = run_all("smoke")
    assert [r["notebook"] for r in records] == ["01_tiny.ipynb"]
    executed = proj / "book" / "_build" / "smoke" / "experiments" / "01_tiny.ipynb"  # the smoke scale's own book
    assert (executed.parent / "01_tiny.run.json").exists() and not (proj / "book" / "experiments").exists()
    outputs = [o for c in nbformat.read(executed, as_version=4).cells for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs)
    assert f"scale smoke root {proj.name} cwd is root True\n" in text  # (the report shows no absolute path)
    assert "\r" not in text and "work:" not in text
    err = capfd.readouterr().err
    assert "01_tiny" in err and "cell" in err  # papermill's bar, labelled with the notebook


@pytest.mark.slow
@pytest.mark.parametrize("cwd", [".", "notebooks"])
def test_papermill_command_reruns_a_notebook(tmp_path, cwd):
    """`papermill notebooks/03_baselines.ipynb out.ipynb -p scale smoke` from the project root (and the same
    from notebooks/): runs on the project kernel, parameters injected, data paths under the project root."""
    assert PAPERMILL.exists(), f"no papermill console script beside {sys.executable}"
    out = tmp_path / "out.ipynb"
    nb_path = "notebooks/03_baselines.ipynb" if cwd == "." else "03_baselines.ipynb"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run([str(PAPERMILL), nb_path, str(out), "-p", "scale", "smoke"], cwd=ROOT / cwd,
                          capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"Executing notebook with kernel: {KERNEL_NAME}" in proc.stderr
    nb = nbformat.read(out, as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and 'scale = "smoke"' in injected[0].source
    assert not nb.metadata.papermill.get("exception")
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    printed = "".join(o.get("text", "") for o in outputs if o.get("name") == "stdout")
    assert "scale=smoke: data in data/proxy_3000_64px_100km/ (project folder)\n" in printed  # no absolute path
    assert any("text/html" in o.get("data", {}) for o in outputs)  # the baseline table
    assert json.loads(json.dumps(nb.metadata.papermill.parameters)) == {"scale": "smoke"}


def test_fold_code_hides_inputs_and_removes_parameters():
    """The book shows results: code inputs collapsed, parameters cells (own and injected) not rendered."""
    from geomtl_core.compendium.runner import fold_code

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# t"),
        nbformat.v4.new_code_cell("scale = 'default'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("scale = 'smoke'", metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("plot()", metadata={"tags": ["figure"]}),
    ])
    fold_code(nb)
    fold_code(nb)  # idempotent
    assert [c.metadata.get("tags") for c in nb.cells] == [
        None, ["parameters", "remove-cell"], ["injected-parameters", "remove-cell"], ["figure", "hide-input"]]


def test_progress_bars_are_off_inside_a_kernel_only():
    """In a Jupyter kernel (papermill by hand, JupyterLab) importing the package turns tqdm's bars off, so an
    executed notebook keeps no progress output; in a terminal they stay on."""
    import subprocess
    import sys

    code = ("import os; os.environ.pop('TQDM_DISABLE', None); {pre}import geomtl_core, tqdm; "
            "print(tqdm.tqdm(range(2)).disable)")
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    run = [sys.executable, "-c"]
    kernel = subprocess.run([*run, code.format(pre="import ipykernel; ")], capture_output=True, text=True, env=env)
    terminal = subprocess.run([*run, code.format(pre="")], capture_output=True, text=True, env=env)
    assert kernel.stdout.strip() == "True" and terminal.stdout.strip() == "False"
