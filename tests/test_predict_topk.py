"""``geomtl predict --top-k K`` shows the runners-up in the table and the CSV, and ``--map`` says where it wrote
(issue 37, item 4): before, K changed nothing but ``--json``, and a map was written without a word."""

import csv
import json
import sys
from pathlib import Path

from geomtl_core.cli import main
from geomtl_core.cli.predict import _also_lines
from geomtl_core.models.bundle import load_bundle

import numpy as np
import pytest
import simplejpeg

sys.path.insert(0, str(Path(__file__).parent))
from toydata import CENTRES, make_toy_dataset, train_tiny_bundle

# the table as it was before --top-k reached it: K = 1 must still print exactly this
OLD_HEADER = f"{'file':<36} {'lat':>8} {'lon':>9}  {'nearest place':<34} {'scene':<24} {'error_km':>9}"


def old_table_line(r: dict) -> str:
    path = r["path"] if len(r["path"]) <= 36 else "…" + r["path"][-35:]
    place = f"{r['place']}, {r['country']}"
    scene = ",".join(s["label"] for s in r["scene"].values())
    err = f"{r['error_km']:9.1f}" if r.get("error_km") is not None else " " * 9
    return f"{path:<36} {r['lat']:8.3f} {r['lon']:9.3f}  {place[:34]:<34} {scene[:24]:<24} {err}"


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    """A tiny trained bundle (three partitionings, a few seconds)."""
    tmp = tmp_path_factory.mktemp("topk")
    return train_tiny_bundle(make_toy_dataset(tmp / "toy", n_train=200, n_val=40), tmp / "bundle")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Three JPEGs and a truth table naming each one's (made-up) location."""
    folder = tmp_path_factory.mktemp("photos")
    rows = ["name,lat,lon"]
    for k in range(3):
        img = np.random.default_rng(k).integers(0, 255, (40, 50, 3)).astype(np.uint8)
        (folder / f"photo_{k}.jpg").write_bytes(simplejpeg.encode_jpeg(img, quality=90))
        rows.append(f"photo_{k}.jpg,{CENTRES[k][0]},{CENTRES[k][1]}")
    truth = folder.parent / f"{folder.name}_truth.csv"
    truth.write_text("\n".join(rows) + "\n")
    return folder, truth


def _json(capsys, bundle_dir, folder, *extra) -> list[dict]:
    assert main(["predict", str(bundle_dir), str(folder), "--json", "--no-progress", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def _table(capsys, bundle_dir, folder, *extra) -> list[str]:
    """The table's lines (header to the blank line before the summary) and the summary's."""
    assert main(["predict", str(bundle_dir), str(folder), "--no-progress", *extra]) == 0
    out = capsys.readouterr().out
    table, _, summary = out.partition("\n\n")
    return table.splitlines(), summary.splitlines()


def test_csv_has_rank_columns_equal_to_json_top_k_and_still_scores(bundle_dir, photos, tmp_path, capsys):
    """Catches the CSV ignoring --top-k (no rank columns), rank columns that disagree with --json's ``cells`` of the
    finest partitioning (wrong partitioning, off by one rank, swapped lat/lon), a header naming more ranks than the
    bundle has cells, and an extended CSV that ``geomtl score`` no longer reads."""
    folder, truth = photos
    fine = load_bundle(bundle_dir).parts[-1]
    assert len(fine) >= 3
    res = {r["img_id"]: r for r in _json(capsys, bundle_dir, folder, "--top-k", "3", "--truth", str(truth))}
    out = tmp_path / "top3.csv"
    assert main(["predict", str(bundle_dir), str(folder), "--csv", str(out), "--top-k", "3", "--truth", str(truth),
                 "--no-progress"]) == 0
    capsys.readouterr()
    with out.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header, rows = reader.fieldnames, list(reader)
    ranks = [f"{fine.name}_{field}_{rank}" for rank in (2, 3) for field in ("lat", "lon", "p", "token")]
    assert [c for c in header if c.startswith(f"{fine.name}_") and c[-2:] in ("_2", "_3", "_4")] == ranks
    assert header[:6] == ["img_id", "true_lat", "true_lon", "pred_lat", "pred_lon", "error_km"]
    assert sorted(r["img_id"] for r in rows) == sorted(res) and len(rows) == 3
    for row in rows:
        cells = res[row["img_id"]]["cells"][fine.name]
        assert len(cells) == 3
        assert (row[f"{fine.name}_token"], float(row[f"{fine.name}_p"])) == \
               (cells[0]["token"], pytest.approx(cells[0]["p"], abs=1e-6))
        for rank in (2, 3):
            cell = cells[rank - 1]
            assert float(row[f"{fine.name}_lat_{rank}"]) == cell["lat"]
            assert float(row[f"{fine.name}_lon_{rank}"]) == cell["lon"]
            assert float(row[f"{fine.name}_p_{rank}"]) == pytest.approx(cell["p"], abs=1e-6)
            assert row[f"{fine.name}_token_{rank}"] == cell["token"]

    assert main(["score", str(out), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    errors = [r["error_km"] for r in res.values()]
    assert scored["n"] == 3 and scored["mean_km"] == pytest.approx(np.mean(errors), rel=1e-6)

    many = tmp_path / "many.csv"  # more ranks asked for than the finest partitioning has cells: its cells only
    assert main(["predict", str(bundle_dir), str(folder), "--csv", str(many), "--top-k", str(len(fine) + 5),
                 "--no-progress"]) == 0
    header = many.read_text().splitlines()[0].split(",")
    assert f"{fine.name}_lat_{len(fine)}" in header and f"{fine.name}_lat_{len(fine) + 1}" not in header
    one = tmp_path / "top1.csv"
    assert main(["predict", str(bundle_dir), str(folder), "--csv", str(one), "--top-k", "1", "--no-progress"]) == 0
    assert not [c for c in one.read_text().splitlines()[0].split(",") if c.endswith("_2")]


def _expected_also(r: dict, fine, k: int) -> list[str]:
    """The cells among the JSON's top k of ``fine`` other than the one holding the guess, at most k - 1."""
    held = fine.assign([r["lat"]], [r["lon"]])[0]
    cells = r["cells"][fine.name][:k]
    assert len(cells) == k
    return [f"#{rank} {c['lat']:.3f}, {c['lon']:.3f} ({c['p']:.3f})" for rank, c in enumerate(cells, 1)
            if c["class"] != held][: k - 1]


def test_table_lists_the_alternatives_and_k1_prints_as_before(bundle_dir, photos, capsys):
    """Catches the table ignoring --top-k, alternatives that are not the JSON's top-k cells of the finest
    partitioning in rank order (or that repeat the guess's own cell), and any change to the table at K = 1 (the
    header, one line per photo, nothing else)."""
    folder, _ = photos
    fine = load_bundle(bundle_dir).parts[-1]
    assert len(fine) >= 6
    res = _json(capsys, bundle_dir, folder, "--top-k", "6")

    table, summary = _table(capsys, bundle_dir, folder, "--top-k", "1")
    assert table == [OLD_HEADER, *[old_table_line(r) for r in res]]
    assert not any("also" in line for line in summary)

    table, summary = _table(capsys, bundle_dir, folder, "--top-k", "3")
    expected = [OLD_HEADER]
    for r in res:
        expected += [old_table_line(r), "    also " + "  ".join(_expected_also(r, fine, 3))]
    assert table == expected
    assert f"also: the other cells among the 3 most likely of the finest partitioning ({fine.name}), as #rank lat, " \
           "lon (probability)" in summary

    table, _ = _table(capsys, bundle_dir, folder, "--top-k", "6")  # five alternatives: four to a line, then one
    expected = [OLD_HEADER]
    for r in res:
        alts = _expected_also(r, fine, 6)
        assert len(alts) == 5
        expected += [old_table_line(r), "    also " + "  ".join(alts[:4]), "    also " + alts[4]]
    assert table == expected


def test_alternatives_leave_out_the_guess_cell():
    """Catches the table's ``also`` repeating the guess when the hierarchy (f*) or the hybrid chose a cell other
    than the finest partitioning's first: that cell is left out and the first shown; a guess outside the top K
    leaves K - 1 alternatives, and K = 1 none."""

    class Fine:  # a finest partitioning: four cells, a point lies in the cell whose index is its latitude
        name = "fine"

        def assign(self, lat, lon):
            return np.array([round(a) for a in lat])

    cells = [{"class": c, "lat": float(c), "lon": 10.0 * c, "p": 0.4 - 0.1 * c, "token": f"t{c}"} for c in range(4)]
    guess_in_second = {"lat": 1.0, "lon": 10.0, "cells": {"coarse": cells, "fine": cells}}
    assert _also_lines(guess_in_second, Fine()) == ["    also #1 0.000, 0.000 (0.400)  #3 2.000, 20.000 (0.200)  "
                                                    "#4 3.000, 30.000 (0.100)"]
    hybrid_point = {"lat": 1.2, "lon": 11.0, "cells": {"fine": cells[:3]}}  # in cell 1, not at its centre
    assert _also_lines(hybrid_point, Fine()) == ["    also #1 0.000, 0.000 (0.400)  #3 2.000, 20.000 (0.200)"]
    outside = {"lat": 7.0, "lon": 70.0, "cells": {"fine": cells[:3]}}
    assert _also_lines(outside, Fine()) == ["    also #1 0.000, 0.000 (0.400)  #2 1.000, 10.000 (0.300)"]
    assert _also_lines({**outside, "cells": {"fine": cells[:1]}}, Fine()) == []


def test_map_prints_the_path_it_wrote(bundle_dir, photos, tmp_path, capsys):
    """Catches --map writing its maps without saying where (one line per map, the path written), and the line
    going to stdout when stdout carries the JSON."""
    folder, _ = photos
    one = folder / "photo_0.jpg"
    out = tmp_path / "one.png"
    _, summary = _table(capsys, bundle_dir, one, "--top-k", "1", "--map", str(out), "--map-dpi", "30")
    assert out.is_file() and [line for line in summary if line.startswith("map")] == [f"map written to {out}"]

    assert main(["predict", str(bundle_dir), str(folder), "--json", "--no-progress", "--map", str(tmp_path / "m.png"),
                 "--map-dpi", "30"]) == 0
    captured = capsys.readouterr()
    res = json.loads(captured.out)  # stdout is the JSON alone
    written = [line for line in captured.err.splitlines() if line.startswith("map written to ")]
    assert written == [f"map written to {r['map']}" for r in res] and len(written) == 3
    for r in res:
        assert Path(r["map"]).is_file() and Path(r["map"]).name == f"m_{Path(r['path']).stem}.png"
