"""Help text as a terminal shows it."""

from __future__ import annotations

import re


def plain(text: str) -> str:
    """A docstring without reST markup: literals (````x````) and roles (``:mod:`~a.b```) as plain text.

    >>> plain("The ``geomtl`` command, see :mod:`~geomtl_core.cli.score`.")
    'The geomtl command, see score.'
    """
    text = re.sub(r":\w+:`~?([^`]+)`", lambda m: m.group(1).rsplit(".", 1)[-1], text)
    return text.replace("``", "")
