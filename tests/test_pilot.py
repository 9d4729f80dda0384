"""A pilot's batches pool into one folds × seeds table only when they ran one setting with the same seeds."""

import json

from geomtl_core.compendium import pilot
from geomtl_core.compendium.results import results_dir
from geomtl_core.geo.protocol import variance_components

import pytest


def _batch(root, tag, folds, diff, seeds=(0, 1), size=32, epochs=3):
    path = results_dir("default", root) / "pilot" / f"{tag}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"folds": folds, "seeds": list(seeds), "size": size, "epochs": epochs,
                                "diff": diff}))


def test_batches_of_one_setting_pool_into_one_table_and_others_are_refused(tmp_path):
    """Two batches (folds 0-1 and 2-3, seeds 0 and 1) give the components of the stacked 4 × 2 table, which differ
    from either batch's own; a batch of another input size or other seeds is refused. Catches a pooled estimate
    that averages the batches' components (wrong between-fold part) or mixes settings."""
    (tmp_path / "_config.yml").write_text("title: t\n")
    _batch(tmp_path, "a", [0, 1], [[1.0, 3.0], [5.0, 6.0]])
    _batch(tmp_path, "b", [2, 3], [[-2.0, 0.0], [4.0, 4.5]])
    out = pilot.pooled("default", ["a", "b"], tmp_path)
    stacked = [[1.0, 3.0], [5.0, 6.0], [-2.0, 0.0], [4.0, 4.5]]
    assert out["folds"] == [0, 1, 2, 3] and out["diff"] == stacked
    assert out["components"] == variance_components(stacked)
    assert out["components"]["between"] != variance_components(stacked[:2])["between"]
    _batch(tmp_path, "c", [4, 5], [[0.0, 1.0], [2.0, 3.0]], size=24)
    _batch(tmp_path, "d", [4, 5], [[0.0, 1.0], [2.0, 3.0]], seeds=(0, 2))
    for other in ("c", "d"):
        with pytest.raises(ValueError, match="cannot be pooled"):
            pilot.pooled("default", ["a", other], tmp_path)
