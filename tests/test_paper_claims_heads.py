"""The paper claims compare the heads they name (issue 36): a run that also scores the retrieval methods (hybrid,
kNN) records them among its test methods, and no head comparison (the middle and fine heads of the claims, the
fine head of the granularity table) may pick one of them."""

import json
from pathlib import Path

from geomtl_core.compendium import paper_claims
from geomtl_core.data.predictions import write_predictions
from geomtl_core.geo.protocol import PRIMARY_KM
from geomtl_core.inference.evaluation import partition_heads, partition_names

import numpy as np
import pytest

SCALE = "smoke"
K = PRIMARY_KM / 200
"""The fake runs' distances were written for a 200 km endpoint: scaled to the protocol's."""
PARTITION = {"tau_min": 5, "tau_max": [400, 200, 100], "cells_files": [], "hierarchical": True,
             "from_full_train": True}
HEADS = ["cells_5_400", "cells_5_200", "cells_5_100"]  # coarse -> fine, as evaluate_split records them
# what a run with train.retrieval records: the heads, f* and a remedy, then the retrieval methods
METHODS = [*HEADS, "hierarchy", "hierarchy_T", "hybrid", "knn"]


def _fake_run(root: Path, name: str, shifts_km: dict[str, float], seeds=(0, 1)) -> dict:
    """Per-seed per-method prediction files (each method ``shifts_km[method]`` east of the truth) and the result
    file of a run with retrieval: its test methods in the recorded order, its config's partitions."""
    rng = np.random.default_rng(0)
    lat = np.repeat(np.linspace(-60, 60, 20), 10) + rng.normal(0, 0.2, 200)
    lon = np.tile(np.linspace(-170, 170, 10), 20) + rng.normal(0, 0.2, 200)
    ids = np.array([f"img{k:04d}" for k in range(200)])
    runs = {}
    for s in seeds:
        run = name if s == seeds[0] else f"{name}.s{s}"
        for m, shift in shifts_km.items():
            write_predictions(root / "runs" / SCALE / run / f"predictions_test.{m}.csv", ids, lat, lon, lat,
                              (lon + K * shift / (111.2 * np.cos(np.radians(lat))) + 180) % 360 - 180)
        runs[str(s)] = run
    result = {"name": name, "seeds": runs, "config": {"partition": PARTITION},
              "test": {"best": "hierarchy", "methods": {m: {} for m in shifts_km}},
              "seed_summary": {f"acc_{PRIMARY_KM}km": {"mean": 1.0}}}
    (root / "results" / SCALE).mkdir(parents=True, exist_ok=True)
    (root / "results" / SCALE / f"{name}.json").write_text(json.dumps(result))
    return result


def test_the_heads_of_a_run_are_its_partitionings_never_its_other_methods():
    """The heads are the methods named after the recorded partitions, coarse -> fine; f*, its remedies and the
    retrieval methods are not. Catches a filter by "not hierarchy", which let hybrid and kNN in as heads."""
    assert partition_heads(METHODS, PARTITION) == HEADS
    assert partition_heads(["hierarchy", "hybrid", "knn"], PARTITION) == []
    files = {"cells_files": ["/data/cells_50_5000.csv", "cells/cells_50_1000.csv"], "tau_min": 50, "tau_max": [1]}
    assert partition_names(files) == {"cells_50_5000", "cells_50_1000"}


def test_the_claims_compare_the_middle_and_fine_partitionings_not_a_retrieval_method(tmp_path):
    """The claims' middle and fine heads of ``st_hier`` (a run that also scored hybrid and kNN) are its middle and
    finest partitionings. Catches the fine head taken as "knn" (chapter 04's "f* − the fine head (knn)", the
    trends' ``st_hier [knn]``) and the middle one shifted by the extra methods."""
    _fake_run(tmp_path, "st_hier", dict.fromkeys(METHODS, 100.0))
    by = {c["claim"]: c for c in paper_claims.claims(SCALE, tmp_path)}
    assert by["three partitionings against one (fine cells)"]["b"] == ("st_hier", "cells_5_100")
    assert by["three partitionings against one (middle cells)"]["b"] == ("st_hier", "cells_5_200")
    own = by["f* against the fine head: the hierarchy's own effect (within one model)"]
    assert own["a"] == ("st_hier", "cells_5_100") and own["b"] == ("st_hier", "hierarchy")
    used = {c[k][1] for c in by.values() for k in ("a", "b")} - {None}
    assert used.isdisjoint({"hybrid", "knn"})


def test_the_granularity_table_sets_f_star_against_the_finest_partitioning(tmp_path):
    """f* (every image within 200 km) against the fine head (none within) is +100 points, and the partitionings
    listed are the three heads; kNN and the hybrid are as good as f*, so comparing f* with one of them reads 0.
    Catches the retrieval methods listed as partitionings and taken as the fine head."""
    shifts = {"cells_5_400": 260.0, "cells_5_200": 260.0, "cells_5_100": 260.0, "hierarchy": 100.0,
              "hierarchy_T": 100.0, "hybrid": 100.0, "knn": 100.0}
    runs = {"st_hier": _fake_run(tmp_path, "st_hier", shifts)}
    table = paper_claims.granularity_table(SCALE, runs, tmp_path)
    row = table.loc["st_hier"]
    assert row["partitionings"] == "cells_5_400, cells_5_200, cells_5_100"
    assert row["f* − fine head (points)"] == pytest.approx(100.0)


def test_a_run_without_a_head_is_refused_with_its_methods():
    """A result whose methods name no recorded partition (e.g. an ISN routing with f* only) is an error that names
    the methods, not an IndexError or a retrieval method taken as a head."""
    result = {"name": "isn_s3", "config": {"partition": PARTITION}, "test": {"methods": {"hierarchy": {}, "knn": {}}}}
    with pytest.raises(ValueError, match=r"no partitioning head.*'hierarchy', 'knn'"):
        paper_claims.run_heads(result)


def test_the_within_model_table_shows_a_dash_in_the_references_own_row(tmp_path):
    """The reference (f*) has no difference to itself: its row reads "—", never NaN, in the book's table; the
    other methods keep their numbers."""
    from geomtl_core.compendium.tables import within_model_table

    _fake_run(tmp_path, "st_hier", {"cells_5_100": 260.0, "hierarchy": 100.0})
    table = within_model_table(SCALE, "st_hier", root=tmp_path, n_boot=50)
    assert (table.loc["hierarchy", ["− hierarchy (points)", "ci95 low", "ci95 high", "verdict"]] == "—").all()
    assert table.loc["cells_5_100", "− hierarchy (points)"] == pytest.approx(-100.0)
    assert not table.isna().any().any()
