"""The geomtl command line."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from geomtl_core.cli import main
from geomtl_core.data.predictions import read_predictions, write_predictions

import numpy as np
import pytest

KEYS = {"n", "acc_1km", "acc_25km", "acc_200km", "acc_750km", "acc_2500km", "median_km", "mean_km", "geoscore"}


def test_score_json_on_published_file(shared, capsys):
    """`geomtl score --json` prints exactly the documented keys with the published numbers."""
    path = shared / "geoestimation/results/im2gps/base_M-fstar.csv"
    assert main(["score", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == KEYS
    assert out["n"] == 237
    assert round(out["acc_25km"], 6) == 0.409283
    assert round(out["acc_2500km"], 6) == 0.78481


def test_score_table_and_ci(shared, capsys):
    """The table mode prints every threshold and, with --ci, an interval."""
    path = shared / "geoestimation/results/im2gps/ISNs_M-fstar-S3.csv"
    assert main(["score", str(path), "--ci"]) == 0
    out = capsys.readouterr().out
    for t in ("1 km", "25 km", "200 km", "750 km", "2500 km", "median error", "GeoScore", "95% CI"):
        assert t in out
    rows = re.findall(r"^\s*(\d+) km\s+([\d.]+)\s+\[([\d.]+), ([\d.]+)\]$", out, flags=re.MULTILINE)
    assert [int(r[0]) for r in rows] == [1, 25, 200, 750, 2500]
    for _, acc, lo, hi in rows:  # each interval brackets its accuracy (rounded to 3 decimals)
        assert float(lo) - 5e-4 <= float(acc) <= float(hi) + 5e-4 and float(lo) < float(hi)


def test_own_layout_round_trip(tmp_path, capsys):
    """A file written in geomtl's layout is read back and scored."""
    ids = np.array(["a", "b", "c"])
    path = write_predictions(tmp_path / "p.csv", ids, np.array([0.0, 10, 20]), np.array([0.0, 10, 20]),
                             np.array([0.0, 10, 21]), np.array([0.0, 10.1, 20]))
    preds = read_predictions(path)
    assert preds.layout == "geomtl" and preds.img_id.tolist() == ids.tolist()
    assert main(["score", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 3 and out["acc_1km"] == pytest.approx(1 / 3)


def test_bad_file_gives_clear_error_and_status(tmp_path, capsys):
    """Out-of-range coordinates: exit status 2 and the line named."""
    path = tmp_path / "bad.csv"
    path.write_text("img_id,gt_lat,predicted_lat,gt_long,predicted_long\nx,10,10,0,0\ny,99,10,0,0\n")
    assert main(["score", str(path)]) == 2
    err = capsys.readouterr().err
    assert "line 3" in err and "invalid" in err


def test_unknown_layout_lists_expected_columns(tmp_path, capsys):
    """A header without coordinate columns says which columns it needs."""
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    assert main(["score", str(path)]) == 2
    assert "gt_lat" in capsys.readouterr().err


def test_installed_entry_point(tmp_path):
    """The `geomtl` console script installed beside this interpreter runs geomtl_core.cli:main."""
    exe = Path(sys.executable).parent / "geomtl"
    assert exe.is_file() and os.access(exe, os.X_OK), f"console script not installed: {exe} (pip install -e .)"
    helped = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: geomtl ") and "score" in helped.stdout
    path = write_predictions(tmp_path / "p.csv", np.array(["a", "b"]), np.array([0.0, 10]), np.array([0.0, 10]),
                             np.array([0.0, 10.5]), np.array([0.0, 10]))
    scored = subprocess.run([str(exe), "score", str(path), "--json"], capture_output=True, text=True)
    assert scored.returncode == 0, scored.stderr
    out = json.loads(scored.stdout)
    assert out["n"] == 2 and out["acc_1km"] == 0.5 and out["acc_200km"] == 1.0
    bad = subprocess.run([str(exe), "score", str(tmp_path / "missing.csv")], capture_output=True, text=True)
    assert bad.returncode == 2 and "missing.csv" in bad.stderr


def test_help_reads_as_plain_text_and_version_is_there(capsys):
    """`geomtl --help` and `geomtl predict --help` show no reST markup; `--version` prints the version."""
    import geomtl_core
    from geomtl_core.cli import main

    import pytest

    for argv in (["--help"], ["predict", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        assert "``" not in out and ":mod:" not in out
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"geomtl {geomtl_core.__version__}"
