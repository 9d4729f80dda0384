"""Results follow the code: a cached run's key changes when a library function, the config or the data changes."""

import shutil
from pathlib import Path

import geomtl_core
from geomtl_core.compendium.run_key import cache_key as run_key
from geomtl_core.compendium.run_key import code_fingerprint, data_fingerprint
from geomtl_core.config import ExperimentConfig


def _copy_package(tmp_path: Path) -> Path:
    pkg = tmp_path / "geomtl_core"
    shutil.copytree(Path(geomtl_core.__file__).parent, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return pkg


def test_editing_a_library_function_body_changes_the_run_key(tmp_path):
    pkg = _copy_package(tmp_path)
    cfg = ExperimentConfig()
    before = run_key(cfg, code_fingerprint(pkg), "data")
    assert before == run_key(cfg, code_fingerprint(pkg), "data")  # deterministic
    src = (pkg / "geo" / "geodesy.py").read_text()
    line = "    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))"
    assert src.count(line) == 1  # the last line of haversine_km's body
    (pkg / "geo" / "geodesy.py").write_text(src.replace(line, line.replace("2 *", "2.0 *")))
    assert run_key(cfg, code_fingerprint(pkg), "data") != before


def test_presentation_modules_do_not_change_the_key(tmp_path):
    """A code edit of a presentation module leaves the key (catches ``tables.py`` fingerprinted after all)."""
    pkg = _copy_package(tmp_path)
    before = code_fingerprint(pkg)
    tables = pkg / "compendium" / "tables.py"
    tables.write_text(tables.read_text() + "\n_PRESENTATION_EDIT = 1\n")
    assert code_fingerprint(pkg) == before


def test_the_code_that_computes_cached_test_metrics_is_in_the_key(tmp_path):
    """Editing the code of the compendium's run evaluation or the verdict's statistics changes the key (the old
    fingerprint left all of ``compendium/`` out, so an edit of ``evaluate_run`` reused stale test metrics)."""
    pkg = _copy_package(tmp_path)
    before = code_fingerprint(pkg)
    for rel in ("compendium/runs.py", "compendium/statistics.py", "compendium/paper_claims.py"):
        f = pkg / rel
        f.write_text(f.read_text() + "\n_AN_EDIT = 1\n")
        assert code_fingerprint(pkg) != before, rel
        before = code_fingerprint(pkg)


def _edit(path: Path, old: str, new: str) -> None:
    """Replace the one occurrence of ``old`` in ``path`` by ``new``."""
    src = path.read_text()
    assert src.count(old) == 1, (path.name, old)
    path.write_text(src.replace(old, new))


def test_comments_docstrings_and_layout_leave_the_run_key(tmp_path):
    """Editing a comment (a measured time in ``scales.py``), a docstring (module, function, attribute) or the layout
    of a line (spacing, line breaks, blank lines) of a fingerprinted module leaves the run key. Catches a fingerprint
    over the source's bytes, with which such an edit retrains every run."""
    pkg = _copy_package(tmp_path)
    cfg = ExperimentConfig()
    before = run_key(cfg, code_fingerprint(pkg), "data")
    geodesy, scales = pkg / "geo" / "geodesy.py", pkg / "compendium" / "scales.py"
    edits = [
        (scales, "\nSCALES: dict[str, dict] = {\n", "\nSCALES: dict[str, dict] = {  # ~9.9 h on 2 cores\n"),
        (scales, "# A GPU:", "# A GPU (measured: 1.5 h):"),
        (geodesy, '"""IUGG mean Earth radius R1 in kilometres."""', '"""The IUGG mean Earth radius, in km."""'),
        (geodesy, "    Invalid means NaN/inf,", "    Invalid means not finite,"),
        (geodesy, "Great-circle geometry on a spherical Earth", "Great-circle distances on a sphere"),
        (geodesy, "    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))",
         "    # the haversine\n\n    return (2*EARTH_RADIUS_KM\n"
         "            * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0, ))))"),
        (geodesy, 'what="first coordinates"', "what='first coordinates'"),
    ]
    for path, old, new in edits:
        _edit(path, old, new)
        assert run_key(cfg, code_fingerprint(pkg), "data") == before, (path.name, new)


def test_a_changed_constant_changes_the_run_key(tmp_path):
    """A code edit that only changes a number (the retrieval kernel's ``0.5`` to ``0.6``), or a docstring turned into
    code, changes the key. Catches a fingerprint that strips more than comments and docstrings (constants, or every
    string), with which a changed number reused stale runs."""
    pkg = _copy_package(tmp_path)
    cfg = ExperimentConfig()
    before = run_key(cfg, code_fingerprint(pkg), "data")
    _edit(pkg / "geo" / "retrieval.py", "np.exp(-0.5 * (d / kernel_km) ** 2)", "np.exp(-0.6 * (d / kernel_km) ** 2)")
    changed = run_key(cfg, code_fingerprint(pkg), "data")
    assert changed != before
    _edit(pkg / "geo" / "geodesy.py", '"""IUGG mean Earth radius R1 in kilometres."""',
          'EARTH_RADIUS_DOC = """IUGG mean Earth radius R1 in kilometres."""')
    assert run_key(cfg, code_fingerprint(pkg), "data") not in (before, changed)


def test_no_cached_number_depends_on_a_presentation_module():
    """A module outside PRESENTATION_MODULES never imports one inside (at any depth of its code): what is left
    out of the fingerprint cannot change a cached number. Catches e.g. ``runs.py`` importing ``tables.py``."""
    import ast

    from geomtl_core.compendium.run_key import PACKAGE, PRESENTATION_MODULES

    def presentation(rel: str) -> bool:
        return rel.startswith(PRESENTATION_MODULES)

    bad = []
    for f in sorted(PACKAGE.rglob("*.py")):
        rel = f.relative_to(PACKAGE).as_posix()
        if presentation(rel) or rel == "__init__.py":
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("geomtl_core."):
                mods = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                for m in mods:
                    dep = m.removeprefix("geomtl_core.").replace(".", "/")
                    if any(presentation(x) for x in (dep + ".py", dep + "/")) and \
                            ((PACKAGE / (dep + ".py")).exists() or (PACKAGE / dep).is_dir()):
                        bad.append(f"{rel} imports {m}")
    assert not bad, bad


def test_config_and_data_are_in_the_key(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    for s in ("train", "val", "test"):
        (root / f"{s}.csv").write_text("IMG_ID,LAT,LON\na,1,2\n")
    cfg = ExperimentConfig.from_dict({"data": {"root": str(root)}})
    d0 = data_fingerprint(cfg)
    k0 = run_key(cfg, "code", d0)
    assert run_key(ExperimentConfig.from_dict({"data": {"root": str(root)}, "train": {"seed": 1}}), "code", d0) != k0
    (root / "test.csv").write_text("IMG_ID,LAT,LON\na,1,3\n")
    assert data_fingerprint(cfg) != d0


def test_a_moved_project_keeps_its_run_keys(tmp_path):
    """Paths inside the project enter the key relative to it: a clone elsewhere reuses its trained runs,
    while a path outside the project (another dataset) still changes the key."""
    from geomtl_core.config import ExperimentConfig

    def cfg(root, data):
        return ExperimentConfig.from_dict({"data": {"root": str(data), "cache_dir": str(root / "data" / "cache")}})

    a, b = tmp_path / "a", tmp_path / "elsewhere" / "b"
    for r in (a, b):
        r.mkdir(parents=True)
    key_a = run_key(cfg(a, a / "data" / "proxy"), "code", "data", root=a)
    assert key_a == run_key(cfg(b, b / "data" / "proxy"), "code", "data", root=b)
    assert key_a != run_key(cfg(b, tmp_path / "other" / "proxy"), "code", "data", root=b)


def test_feature_cache_survives_a_moved_project_and_follows_what_features_depend_on(tmp_path):
    """The cache key holds the data root relative to the cache (not where the project lives), and changes
    with what the features depend on (here small_cnn's padding)."""
    from geomtl_core.data.features import feature_cache_path

    def path(project: Path, **model) -> Path:
        cfg = ExperimentConfig.from_dict({"data": {"root": str(project / "data" / "proxy"),
                                                   "cache_dir": str(project / "data" / "cache")},
                                          "model": {"freeze_backbone": True, **model}})
        return feature_cache_path(cfg, "train")

    a, b = path(tmp_path / "a"), path(tmp_path / "elsewhere" / "b")
    assert a.name == b.name and a.parent != b.parent
    assert path(tmp_path / "a", conv_padding="same_symmetric").name != a.name
    assert path(tmp_path / "a", width=0.5).name != a.name


def test_config_conv_padding_reaches_the_model_and_is_checked():
    from geomtl_core.errors import InputError
    from geomtl_core.models.multitask import build_model

    import pytest

    class Part:
        name = "coarse"

        def __len__(self):
            return 4

    cfg = ExperimentConfig.from_dict({"model": {"width": 0.25, "conv_padding": "same_symmetric"}})
    assert build_model(cfg, [Part()], {}).backbone.blocks[0].symmetric_padding is True
    # the default is what configs saved before the field meant: a resumed old run rebuilds its own network
    assert build_model(ExperimentConfig(), [Part()], {}).backbone.blocks[0].symmetric_padding is False
    with pytest.raises(InputError, match="conv_padding"):
        build_model(ExperimentConfig.from_dict({"model": {"conv_padding": "full"}}), [Part()], {})
