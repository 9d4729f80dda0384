"""A run's evaluation inside :func:`~geomtl_core.compendium.runs.run_once`, with the model it holds in memory: test
metrics (from cached features where the backbone is frozen) and, for the scale's retrieval cells, the hybrid and
kNN predictors scored beside f* (:func:`geomtl_core.inference.hybrid.hybrid_for_run`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from geomtl_core.config import ExperimentConfig

if TYPE_CHECKING:
    from geomtl_core.models.bundle import Bundle


def score_retrieval(staging: Path, cfg: ExperimentConfig, test: dict, bundle: Bundle | None = None) -> dict:
    """The hybrid and kNN predictors of a run on cached features (:func:`geomtl_core.inference.hybrid.hybrid_for_run`):
    their test summaries join ``test["methods"]`` (compared like any other method of the run); returns the
    settings chosen on validation, gallery size and timings."""
    from geomtl_core.inference.hybrid import hybrid_for_run

    res = hybrid_for_run(staging, cfg, bundle=bundle)
    test["methods"] |= res.pop("methods")
    test.setdefault("prediction_files", {}).update({m: str(staging / f) for m, f in res["prediction_files"].items()})
    return res


def evaluate_run(out: Path, cfg: ExperimentConfig, split: str, bundle: Bundle | None = None) -> dict:
    """Test metrics of a bundle (from cached features when its backbone is frozen and cached); ``bundle``: the
    one in ``out`` already in memory (default: loaded from it)."""
    from dataclasses import replace

    from geomtl_core.data.dataset import make_loader
    from geomtl_core.data.features import FeatureDataset, extract_features, feature_cache_path, uses_cached_features
    from geomtl_core.data.loaders import load_tables, split_loader
    from geomtl_core.inference.evaluation import evaluate_split
    from geomtl_core.models.bundle import load_bundle

    bundle = load_bundle(out) if bundle is None else bundle
    data = split_loader(cfg, split, load_tables(cfg, (split,))[split], bundle.parts, train=False)
    hierarchy = bundle.hierarchy if cfg.partition.hierarchical else None
    csv = out / f"predictions_{split}.csv"
    fixes = json.loads((out / "remedies.json").read_text()) if (out / "remedies.json").exists() else None
    if not uses_cached_features(cfg):
        return evaluate_split(bundle.model, data, bundle.parts, hierarchy, csv, progress=False, remedies=fixes)
    feats = extract_features(bundle.model, data.dataset, feature_cache_path(cfg, split), workers=cfg.data.workers,
                             progress=False)
    loader = make_loader(FeatureDataset(feats, data.labels.targets), 512, seed=cfg.train.seed)
    return evaluate_split(bundle.model, replace(data, loader=loader), bundle.parts, hierarchy, csv,
                          progress=False, from_features=True, remedies=fixes)
