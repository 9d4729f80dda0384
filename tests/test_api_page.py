"""The API page of the book documents what the code has: every config key with its default and allowed values,
every public name, and an example that uses public names only."""

import re

import geomtl_core
from geomtl_core.compendium.project import find_root
from geomtl_core.config import CHOICES, RANGES, ExperimentConfig, flatten

ROOT = find_root(__file__)
PAGE = (ROOT / "book" / "api.md").read_text()


def _table() -> dict[str, tuple[str, str]]:
    """Rows of the configuration table: each key of a row (a row may name several) -> (default, allowed)."""
    rows = {}
    for line in PAGE.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            keys = re.findall(r"`([\w.]+)`", cells[0])
            defaults = [d.strip().strip("`") for d in cells[1].split("`, `")]
            for k, d in zip(keys, defaults, strict=True):
                rows[k] = (d, cells[2])
    return rows


def _shown(value) -> str:
    """A default as the table writes it (YAML-like)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return '""' if value == "" else str(value)


def test_config_table_lists_every_key_with_its_default_and_range():
    """One row per config key (no stale ones), the default as the code has it, the range or choices it checks."""
    rows = _table()
    values = flatten(ExperimentConfig().to_dict())
    assert set(rows) == set(values)
    for key, value in values.items():
        default, allowed = rows[key]
        assert default == _shown(value), key
        if key in RANGES:
            assert str(RANGES[key]).removeprefix("in ") in allowed, key
        if key in CHOICES:
            assert allowed == ", ".join(CHOICES[key]), key


def test_every_public_name_is_on_the_page_and_the_example_uses_public_names():
    """Each name of ``geomtl_core.__all__`` is documented; the example imports only public names."""
    for name in geomtl_core.__all__:
        if name != "__version__":
            assert re.search(rf"\b{name}\b", PAGE), name
    example = re.search(r"```python\n(.*?)```", PAGE, re.S).group(1)
    imported = re.search(r"from geomtl_core import (.*)", example).group(1).split(", ")
    assert set(imported) <= set(geomtl_core.__all__)
