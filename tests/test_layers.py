"""The package layout is the architecture: layers import downward only, and no module imports itself back.

base (errors, config, distributed, files; may import each other) <- geo <- data <- models <- inference
<- training <- cli, compendium. Inside the compendium its rooms are layered too (:data:`COMPENDIUM`).
Function-level imports count too (a lazy import is still a dependency).
"""

import ast
from pathlib import Path

import geomtl_core

import pytest

PACKAGE = Path(geomtl_core.__file__).parent
LAYERS = {"errors": 0, "config": 0, "distributed": 0, "files": 0, "geo": 1, "data": 2, "models": 3, "inference": 4,
          "training": 5, "cli": 6, "compendium": 6}


def _layer_of(module: str) -> tuple[str, int]:
    """``geomtl_core.data.dataset`` -> ("data", 2)."""
    top = module.split(".")[1]
    return top, LAYERS[top]


def _imports(path: Path) -> set[str]:
    """Every ``geomtl_core.*`` module a file imports, at any depth of the code."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("geomtl_core"):
            if node.module == "geomtl_core":  # from geomtl_core import distributed
                out |= {f"geomtl_core.{a.name}" for a in node.names}
            else:
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("geomtl_core.")}
    return out


def test_every_module_belongs_to_a_layer():
    tops = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.rglob("*.py")}
    assert tops - {"__init__"} <= set(LAYERS), f"modules outside the layers: {tops - set(LAYERS) - {'__init__'}}"


def test_layers_import_downward_only():
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts == ("__init__.py",):
            continue  # the package root lists the public API from every layer
        me = "geomtl_core." + ".".join(rel.with_suffix("").parts)
        top, level = _layer_of(me)
        for dep in _imports(path):
            if dep == "geomtl_core":
                continue
            dep_top, dep_level = _layer_of(dep)
            if dep_level > level or (dep_level == level and dep_top != top and level > 0):
                violations.append(f"{me} ({top}) imports {dep} ({dep_top})")
    assert not violations, "\n".join(violations)


def test_the_rule_can_fail(tmp_path):
    """The checker sees an upward import, also inside a function."""
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from geomtl_core.training.trainer import train\n")
    assert _imports(f) == {"geomtl_core.training.trainer"}
    assert _layer_of("geomtl_core.training.trainer")[1] > _layer_of("geomtl_core.geo.s2")[1]


def test_public_api_is_importable_and_documented():
    """Every name in ``__all__`` resolves, and the book's API page documents it."""
    book = (PACKAGE.parent / "book" / "api.md").read_text()
    for name in geomtl_core.__all__:
        assert getattr(geomtl_core, name) is not None, name
        if name != "__version__":
            assert f".{name}\n" in book or f".{name}\n   :members:" in book, f"{name} missing from book/api.md"


def test_every_library_file_is_tracked_by_git():
    """A source file that .gitignore hides would be missing from every clone (and from CI)."""
    import shutil
    import subprocess

    root = PACKAGE.parent
    if shutil.which("git") is None or not (root / ".git").exists():
        import pytest

        pytest.skip("not a git checkout")
    tracked = set(subprocess.run(["git", "ls-files", "geomtl_core"], cwd=root, capture_output=True, text=True,
                                 check=True).stdout.split())
    ignored = subprocess.run(["git", "check-ignore", *[str(p.relative_to(root)) for p in PACKAGE.rglob("*.py")]],
                             cwd=root, capture_output=True, text=True).stdout.split()
    assert not ignored, f"ignored by .gitignore: {ignored}"
    untracked = [str(p.relative_to(root)) for p in PACKAGE.rglob("*") if p.is_file() and p.suffix in {".py", ".json"}
                 and "__pycache__" not in p.parts and str(p.relative_to(root)) not in tracked]
    assert not untracked, f"not committed: {untracked}"


COMPENDIUM = {"scales": 0, "project": 0, "executors": 0, "statistics": 1, "design": 1, "run_key": 1, "results": 2,
              "provision": 2, "run_eval": 2, "runs": 3, "grid": 4, "baselines": 5, "calibration": 5,
              "paper_claims": 5, "pilot": 5, "verdict": 6, "tables": 6, "prose": 6, "plots": 6, "proxy_plots": 6,
              "publish": 6, "plan": 6, "runner": 7}
"""The compendium's rooms, bottom up: the scales, the project folder and the executors; statistics of prediction
files, the study design (what runs, nothing trained) and the run key; reading results, the scale's data and base
config, a run's evaluation; the run cache (which asks the design which runs score the hybrid); running the grid;
the calibration, the baselines, the paper's claims and a design's pilot; the comparison tables (verdict, methods,
paper trends: they read the claims) and presentation (tables, prose, plots), publishing; the notebook runner."""


def _module_graph() -> dict[str, set[str]]:
    """Every geomtl_core module and the geomtl_core modules it imports (packages resolved to their modules)."""
    mods = {"geomtl_core." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__"): p
            for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in mods.items():
        deps = set()
        for dep in _imports(path):
            if dep in mods:
                deps.add(dep)
            else:  # "from geomtl_core.compendium import runs": the names are modules
                deps |= {m for m in mods if m.startswith(dep + ".") and m.count(".") == dep.count(".") + 1}
        graph[name] = deps - {name}
    if "geomtl_core" in graph:
        graph["geomtl_core"] = set()  # the package root lists the public API lazily (a table of names)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph, or None (depth-first search with colours)."""
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                return [*stack[stack.index(d):], d]
            if d not in state and (found := visit(d)):
                return found
        state[n] = 2
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_no_import_cycle_anywhere():
    """No module of geomtl_core imports itself back through others, function-level imports included (the
    compendium once ran experiments -> grid -> report -> experiments behind lazy imports)."""
    cycle = _cycle(_module_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_check_can_fail():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.slow
def test_compendium_rooms_import_downward_only():
    """Each compendium module imports only rooms below it (or beside it at rank 0)."""
    room = PACKAGE / "compendium"
    names = {p.stem for p in room.glob("*.py")} - {"__init__"}
    assert names == set(COMPENDIUM), f"rooms not ranked: {names ^ set(COMPENDIUM)}"
    bad = []
    for name in sorted(names):
        for dep in _module_graph()[f"geomtl_core.compendium.{name}"]:
            if dep.startswith("geomtl_core.compendium."):
                other = dep.rsplit(".", 1)[1]
                if COMPENDIUM[other] >= COMPENDIUM[name] and not COMPENDIUM[name] == COMPENDIUM[other] == 0:
                    bad.append(f"{name} ({COMPENDIUM[name]}) imports {other} ({COMPENDIUM[other]})")
    assert not bad, bad
