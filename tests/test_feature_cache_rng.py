"""A run on cached features gives the same model whether its feature cache was cold (extracted in
this run) or warm (read from an earlier run): results never depend on which runs came first."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from toydata import make_toy_dataset, train_tiny_bundle


def test_cold_and_warm_feature_cache_train_the_same_model(tmp_path):
    root = make_toy_dataset(tmp_path / "toy", n_train=160, n_val=40)
    frozen = {"model": {"neck_units": 16, "freeze_backbone": True}}
    cold = train_tiny_bundle(root, tmp_path / "cold", data_cache=tmp_path / "cache", **frozen)
    warm = train_tiny_bundle(root, tmp_path / "warm", data_cache=tmp_path / "cache", **frozen)
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (cold, warm))
    assert a["cached_features"] and b["cached_features"]
    assert a["val"]["methods"] == b["val"]["methods"]
    assert (cold / "history.csv").read_text() == (warm / "history.csv").read_text()
