"""Adaptive S2 partitionings: build, read, assign, relate."""

from collections import defaultdict

from geomtl_core.cli import main
from geomtl_core.geo import s2
from geomtl_core.geo.geodesy import InvalidCoordinatesError
from geomtl_core.geo.partitioning import (
    CellsFileError,
    Hierarchy,
    Partitioning,
    build_partitionings,
    read_cells_csv,
    relate,
    write_cells_csv,
)

import numpy as np
import pandas as pd
import pytest
import s2sphere

TAUS = (5000, 2000, 1000)


@pytest.fixture(scope="module")
def published(shared):
    return [read_cells_csv(shared / f"geoestimation/geo-cells/cells_50_{t}.csv") for t in TAUS]


def _clustered_points(n, seed=0):
    """Points clustered around a few hundred centres (like photos around cities)."""
    rng = np.random.default_rng(seed)
    centres_lat = np.degrees(np.arcsin(rng.uniform(-0.9, 0.95, 300)))
    centres_lon = rng.uniform(-180, 180, 300)
    w = rng.pareto(1.2, 300) + 0.05
    c = rng.choice(300, size=n, p=w / w.sum())
    lat = np.clip(centres_lat[c] + rng.normal(0, 1.5, n), -89.9, 89.9)
    lon = (centres_lon[c] + rng.normal(0, 1.5, n) + 180) % 360 - 180
    return lat, lon


def _reference_build(lat, lon, tau_min, tau_max, lvl_min=2, lvl_max=30):
    """GeoEstimation's algorithm, written point by point with s2sphere dictionaries."""
    leaves = [s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(a, b)) for a, b in zip(lat, lon, strict=True)]
    cells = defaultdict(list)
    for k, leaf in enumerate(leaves):
        cells[leaf.parent(lvl_min).id()].append(k)
    cells = {c: v for c, v in cells.items() if len(v) > tau_min}
    done = False
    while not done:
        done = True
        new = defaultdict(list)
        for c, members in cells.items():
            level = s2sphere.CellId(c).level()
            if len(members) > tau_max and level < lvl_max:
                done = False
                for k in members:
                    new[leaves[k].parent(level + 1).id()].append(k)
            else:
                new[c].extend(members)
        cells = new
    return {c: len(v) for c, v in cells.items() if len(v) > tau_min}


def test_published_cells_files_read(published):
    """The three published partitionings have 3298/7202/12893 classes of 4723695 images."""
    assert [len(p) for p in published] == [3298, 7202, 12893]
    assert all(p.num_images == 4723695 for p in published)
    assert published[0].tokens[0] == "8744" and published[0].counts[0] == 3376


def test_build_equals_reference_algorithm():
    """Vectorised build = point-by-point s2sphere implementation (cells and counts)."""
    lat, lon = _clustered_points(30_000)
    parts = build_partitionings(lat, lon, tau_max=(2000, 500), tau_min=20)
    for part, tau in zip(parts, (2000, 500), strict=True):
        ref = _reference_build(lat, lon, 20, tau)
        assert dict(zip(part.cell_ids.tolist(), part.counts.tolist(), strict=True)) == ref
        assert part.counts.max() <= tau and part.counts.min() > 20


def test_round_trip_build_write_read_assign(tmp_path):
    """build -> write -> read -> assign gives every kept training point its own class back."""
    lat, lon = _clustered_points(20_000, seed=1)
    leaves = s2.cell_ids(lat, lon)
    for part in build_partitionings(lat, lon, tau_max=(3000, 800), tau_min=30):
        # each point's own class: the cell that contains its leaf
        own = np.full(len(lat), -1)
        for k, c in enumerate(part.cell_ids):
            own[(leaves >= s2.range_min(c)) & (leaves <= s2.range_max(c))] = k
        back = read_cells_csv(write_cells_csv(part, tmp_path / f"{part.name}.csv"))
        assert back.tokens == part.tokens
        np.testing.assert_allclose(back.lat_mean, part.lat_mean, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(back.assign(lat, lon), own)
        assert (own >= 0).sum() == part.points_in_cells == back.points_in_cells
        assert part.num_images == back.num_images == len(lat)


def test_class_mean_handles_the_antimeridian():
    """Points on both sides of 180° average to ~180°, not to 0°."""
    rng = np.random.default_rng(0)
    lat = rng.normal(-17.0, 0.2, 400)
    lon = np.concatenate([rng.uniform(179.0, 180.0, 200), rng.uniform(-180.0, -179.0, 200)])
    (part,) = build_partitionings(lat, lon, tau_max=(10_000,), tau_min=5)
    big = np.argmax(part.counts)
    assert abs(abs(part.lon_mean[big]) - 180.0) < 0.5


def test_im2gps3k_assignment_matches_s2sphere(shared, published):
    """Assigned/unassigned counts of Im2GPS3k per partitioning equal a per-point s2sphere walk."""
    meta = pd.read_csv(shared / "geoestimation/meta/im2gps3k_places365.csv")
    for part in published:
        cells = {tok: k for k, tok in enumerate(part.tokens)}
        expected = []
        for a, b in zip(meta.LAT, meta.LON, strict=True):
            leaf = s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(a, b))
            found = -1
            for level in range(30, -1, -1):
                tok = leaf.parent(level).to_token()
                if tok in cells:
                    found = cells[tok]
                    break
            expected.append(found)
        got = part.assign(meta.LAT, meta.LON)
        np.testing.assert_array_equal(got, np.array(expected))
    counts = [int((p.assign(meta.LAT, meta.LON) >= 0).sum()) for p in published]
    assert counts == [2996, 2988, 2964]  # of 2997; values recomputed above with s2sphere


def test_relate_published(published):
    """Every published fine cell has a middle and coarse ancestor containing it."""
    hier = relate(published)
    assert hier.orphans == {}
    assert hier.matrix.shape == (12893, 3)
    np.testing.assert_array_equal(hier.matrix[:, 2], np.arange(12893))
    for k in (0, 1):
        anc = published[k].cell_ids[hier.matrix[:, k]]
        lv = published[k].levels[hier.matrix[:, k]]
        np.testing.assert_array_equal(s2.parent(published[2].cell_ids, lv), anc)


def test_relate_reports_orphans():
    """A fine cell outside every coarse cell is reported, not silently mapped."""
    ids = s2.parent(s2.cell_ids(np.array([10.0, -40.0]), np.array([10.0, 100.0])), 6)
    coarse = Partitioning(s2.parent(ids[:1], 3), np.array([100]), np.array([10.0]), np.array([10.0]))
    fine = Partitioning(ids, np.array([60, 60]), np.array([10.0, -40.0]), np.array([10.0, 100.0]))
    hier = relate([coarse, fine])
    assert hier.matrix[:, 0].tolist() == [0, -1]
    assert hier.orphans[0].tolist() == [1]


def test_hierarchical_scores_hand_example():
    """Three partitionings: score = product of own and ancestors' probabilities."""
    hier = Hierarchy(np.array([[0, 0, 0], [0, 1, 1], [1, 2, 2], [1, 2, 3]]), {})
    coarse = np.array([[0.3, 0.7]])
    middle = np.array([[0.2, 0.5, 0.3]])
    fine = np.array([[0.1, 0.2, 0.3, 0.4]])
    s = hier.scores([coarse, middle, fine])
    np.testing.assert_allclose(s, [[0.3 * 0.2 * 0.1, 0.3 * 0.5 * 0.2, 0.7 * 0.3 * 0.3, 0.7 * 0.3 * 0.4]])
    assert s.argmax() == 3  # 0.084 beats 0.063, 0.03 and 0.006


def test_bad_coordinates_name_the_row():
    """NaN or out-of-range coordinates are refused with the row named."""
    with pytest.raises(InvalidCoordinatesError, match="rows: 1"):
        build_partitionings([0.0, np.nan], [0.0, 0.0])
    part = Partitioning(s2.parent(s2.cell_ids([0.0], [0.0]), 2), np.array([1]), np.zeros(1), np.zeros(1))
    with pytest.raises(InvalidCoordinatesError, match="rows: 2"):
        part.assign([0, 0, 0], [0, 0, 200])
    with pytest.raises(ValueError, match="zero coordinates"):
        build_partitionings([], [])


def _cells_file(tmp_path, rows):
    path = tmp_path / "cells.csv"
    path.write_text("num_images: 10\nmin_concept_probability: ---\nclass_label,hex_id,imgs_per_cell,"
                    "latitude_mean,longitude_mean\n" + "\n".join(rows) + "\n")
    return path


def test_cells_file_errors_name_the_line(tmp_path):
    """Duplicate or malformed tokens, bad numbers and empty files are clear errors."""
    with pytest.raises(CellsFileError, match="duplicate hex_id '8744' at lines \\[4, 5\\]"):
        read_cells_csv(_cells_file(tmp_path, ["0,8744,5,1,1", "1,8744,5,1,1"]))
    with pytest.raises(CellsFileError, match=r":5: .*token 'zz'"):
        read_cells_csv(_cells_file(tmp_path, ["0,8744,5,1,1", "1,zz,5,1,1"]))
    with pytest.raises(CellsFileError, match=":4: malformed row"):
        read_cells_csv(_cells_file(tmp_path, ["0,8744,five,1,1"]))
    with pytest.raises(CellsFileError, match="overlap"):
        read_cells_csv(_cells_file(tmp_path, ["0,8744,5,1,1", "1,8745,5,1,1"]))
    with pytest.raises(InvalidCoordinatesError, match="line 4"):
        read_cells_csv(_cells_file(tmp_path, ["0,8744,5,91,1"]))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(CellsFileError, match="expected 2 header lines"):
        read_cells_csv(empty)


def test_cli_build_and_assign(tmp_path, capsys):
    """`geomtl partition build` writes the published format; `assign` adds class_label."""
    lat, lon = _clustered_points(12_000, seed=2)
    coords = tmp_path / "coords.csv"
    pd.DataFrame({"IMG_ID": np.arange(len(lat)), "LON": lon, "LAT": lat}).to_csv(coords, index=False)
    out = tmp_path / "cells"
    assert main(["partition", "build", str(coords), "--tau-min", "20", "--tau-max", "2000",
                 "--tau-max", "500", "--out", str(out)]) == 0
    lines = (out / "cells_20_500.csv").read_text().splitlines()
    assert lines[0] == f"num_images: {len(lat)}" and lines[1] == "min_concept_probability: ---"
    assert lines[2] == "class_label,hex_id,imgs_per_cell,latitude_mean,longitude_mean"
    assert main(["partition", "assign", "--cells", str(out / "cells_20_500.csv"), str(coords),
                 "--out", str(tmp_path / "a.csv")]) == 0
    a = pd.read_csv(tmp_path / "a.csv")
    assert list(a.columns) == ["IMG_ID", "LON", "LAT", "class_label"] and len(a) == len(lat)
    assert "unassigned" in capsys.readouterr().out
    assert main(["partition", "relate", str(out / "cells_20_2000.csv"), str(out / "cells_20_500.csv")]) == 0


def test_cli_assign_bad_input(tmp_path, capsys):
    """Empty files and missing coordinate columns exit 2 with a message."""
    cells = tmp_path / "c.csv"
    write_cells_csv(build_partitionings(*_clustered_points(2_000, seed=3), tau_max=(500,), tau_min=20)[0], cells)
    empty = tmp_path / "e.csv"
    empty.write_text("")
    assert main(["partition", "assign", "--cells", str(cells), str(empty), "--out", str(tmp_path / "o.csv")]) == 2
    assert "empty" in capsys.readouterr().err
    nocols = tmp_path / "n.csv"
    nocols.write_text("a,b\n1,2\n")
    assert main(["partition", "assign", "--cells", str(cells), str(nocols), "--out", str(tmp_path / "o.csv")]) == 2
    assert "latitude" in capsys.readouterr().err


@pytest.mark.slow
def test_partition_map_renders_offline(tmp_path, published):
    """The cartopy map renders with offline Natural Earth data (no download)."""
    from geomtl_core.geo.basemap import plot_partitioning

    fig = plot_partitioning(published[0])
    out = tmp_path / "m.png"
    fig.savefig(out, dpi=50)
    assert out.stat().st_size > 10_000
