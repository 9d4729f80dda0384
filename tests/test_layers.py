"""The package layout is the architecture: layers import downward only.

base (errors, config, distributed; may import each other) <- geo <- data <- models <- inference
<- training <- cli, compendium.
Function-level imports count too (a lazy import is still a dependency).
"""

import ast
from pathlib import Path

import geomtl_core

PACKAGE = Path(geomtl_core.__file__).parent
LAYERS = {"errors": 0, "config": 0, "distributed": 0, "geo": 1, "data": 2, "models": 3, "inference": 4,
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
