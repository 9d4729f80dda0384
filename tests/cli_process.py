"""Run ``geomtl`` in a fresh Python process and report which heavy modules it imported: the tests of input checked
before torch loads share it."""

import json
import subprocess
import sys
from pathlib import Path

WRAPPER = """
import json, sys
from geomtl_core.cli import main
rc = 1
try:
    rc = main(sys.argv[2:])
finally:
    heavy = sorted(m for m in ("torch", "keras", "tensorflow", "torchvision") if m in sys.modules)
    with open(sys.argv[1], "w") as fh:
        json.dump(heavy, fh)
sys.exit(rc)
"""


def run_cli(args: list[str], cwd: Path, marker: Path, timeout: int = 300) -> tuple[int, str, str, list[str]]:
    """(exit status, stdout, stderr, heavy modules imported) of ``geomtl ARGS`` run in ``cwd``; ``marker``: a file
    outside ``cwd`` the process writes the module list to."""
    proc = subprocess.run([sys.executable, "-c", WRAPPER, str(marker), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr, json.loads(Path(marker).read_text())
