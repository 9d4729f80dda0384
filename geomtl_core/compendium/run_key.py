"""What a cached run is keyed by: its resolved config, a fingerprint of the library code that trains **and
evaluates** it (the syntax of every module but the presentation ones, :data:`PRESENTATION_MODULES`, comments and
docstrings left out) and a fingerprint of the data it reads."""

from __future__ import annotations

import ast
import functools
import hashlib
import json
from pathlib import Path

from geomtl_core.compendium.project import find_root
from geomtl_core.config import ExperimentConfig
from geomtl_core.files import model_file

PRESENTATION_MODULES = (
    "cli/", "inference/predict.py", "inference/maps.py", "inference/geocode.py", "geo/basemap.py",
    "compendium/plots.py", "compendium/proxy_plots.py", "compendium/tables.py", "compendium/prose.py",
    "compendium/publish.py", "compendium/runner.py", "compendium/verdict.py", "compendium/calibration.py",
)
"""Library paths that only present results: no module that computes a cached number imports them (a test
checks), so their edits never change a trained run or its test metrics. Everything else is fingerprinted."""

PACKAGE = Path(__file__).resolve().parents[1]


def _without_docstrings(tree: ast.AST) -> ast.AST:
    """``tree`` with every statement that is a bare string constant removed: the docstrings of the module, its
    classes and functions, and the attribute docstrings after an assignment (none of them runs)."""
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if isinstance(body, list):
                body[:] = [s for s in body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
                                                   and isinstance(s.value.value, str))]
    return tree


@functools.lru_cache(maxsize=1024)
def _syntax_digest(source: bytes) -> str:
    """sha256 of a module's syntax tree without docstrings: what it computes, not how its text is laid out
    (comments, docstrings, blank lines, line breaks, quotes and spacing leave it unchanged)."""
    tree = _without_docstrings(ast.parse(source))
    return hashlib.sha256(ast.dump(tree, annotate_fields=False, include_attributes=False).encode()).hexdigest()


def code_fingerprint(package: Path = PACKAGE) -> str:
    """sha256 over the syntax (:func:`_syntax_digest`: comments and docstrings left out) of every library module
    that can change a run or its cached numbers, so that editing a comment or a docstring retrains nothing."""
    h = hashlib.sha256()
    for f in sorted(package.rglob("*.py")):
        rel = f.relative_to(package).as_posix()
        if rel.startswith(PRESENTATION_MODULES):
            continue
        h.update(rel.encode())
        h.update(_syntax_digest(f.read_bytes()).encode())
    return h.hexdigest()[:16]


def data_fingerprint(cfg: ExperimentConfig) -> str:
    """sha256 over what a run reads besides images: the metadata CSVs of its splits and ``proxy.json``
    (which pins the image export's config and assets); missing files hash as absent."""
    from geomtl_core.data.loaders import split_paths

    h = hashlib.sha256()
    root = Path(cfg.data.root)
    for f in [split_paths(cfg, s)[1] for s in ("train", "val", "test")] + [root / "proxy.json"]:
        h.update(f.name.encode())
        h.update(f.read_bytes() if f.exists() else b"<absent>")
    return h.hexdigest()[:16]


def cache_key(cfg: ExperimentConfig, code: str | None = None, data: str | None = None,
              root: Path | None = None) -> str:
    """What a cached run depends on: its config (paths inside the project ``root`` written relative to it, so a
    moved or cloned project keeps its runs), the library code and the data it reads."""
    prefix = str(Path(find_root() if root is None else root).resolve()) + "/"
    config = json.loads(json.dumps(cfg.to_dict()).replace(json.dumps(prefix)[1:-1], "<project>/"))
    parts = [config, code or code_fingerprint(), data or data_fingerprint(cfg)]
    if cfg.train.init_from:  # the model it starts from: retrained, it makes this a different run
        start = model_file(cfg.train.init_from)
        if start is None:
            raise FileNotFoundError(f"train.init_from={cfg.train.init_from}: no trained model in it")
        parts.append(hashlib.sha256(start.read_bytes()).hexdigest())
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
