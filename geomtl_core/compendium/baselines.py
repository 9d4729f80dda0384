"""The reference points of a scale on its test split: the prior, the best single point, label-only
predictors, kNN on the frozen backbone's features and both oracles (:mod:`geomtl_core.geo.baselines`), with
block CIs, cached in ``results/<scale>/baselines/baselines.json`` while code and data are unchanged."""

from __future__ import annotations

import json
from pathlib import Path

from geomtl_core.compendium import provision as P
from geomtl_core.compendium import run_key as K
from geomtl_core.compendium.design import AUX
from geomtl_core.compendium.grid import named_units, run_named
from geomtl_core.compendium.project import find_root
from geomtl_core.compendium.results import results_dir
from geomtl_core.compendium.runs import train_units
from geomtl_core.models.bundle import write_json_atomic

import numpy as np


def baselines(scale: str, root: Path | None = None) -> dict[str, dict]:
    """The reference points of a scale on its test split (:mod:`geomtl_core.geo.baselines`), as summary
    dicts with block CIs: prior, best single point, label-only (S3, S16), kNN on the frozen backbone's
    features (those of the ``st_hier`` run, trained first if needed), and both oracles of the finest
    partitioning. Cached in ``results/<scale>/baselines/baselines.json`` while code and data are unchanged."""
    from geomtl_core.data.features import cached_features, feature_cache_path
    from geomtl_core.data.loaders import load_meta, make_partitionings
    from geomtl_core.geo import baselines as B

    root = find_root() if root is None else Path(root)
    cfg = P.experiment_config(scale, root=root)
    key = K.cache_key(cfg, K.code_fingerprint(), K.data_fingerprint(cfg), root)  # this module is fingerprinted
    path = results_dir(scale, root) / "baselines" / "baselines.json"
    if path.exists() and json.loads(path.read_text()).get("key") == key:
        return json.loads(path.read_text())["baselines"]
    # its frozen backbone's features are the kNN space; its runs (folds, A/A seeds) train on the runner's executor
    # first (``--workers``: local processes), then are read back
    train_units(named_units("st_hier", scale, AUX["st"], root), root)
    run_named("st_hier", scale, AUX["st"], root)
    train, test = load_meta(cfg, "train"), load_meta(cfg, "test")
    parts = make_partitionings(cfg, train)
    tl, tn, lat, lon = (x.to_numpy() for x in (train.lat, train.lon, test.lat, test.lon))
    # kNN's gallery: the training images st_hier trains on (inside every partitioning's cells), so the
    # baseline does not depend on which other runs added features to the shared cache
    usable = np.logical_and.reduce([p.assign(tl, tn) >= 0 for p in parts])
    f_train, found = cached_features(feature_cache_path(cfg, "train"), train.img_id.to_numpy()[usable])
    if not found.all():
        raise FileNotFoundError(f"no cached features for {int((~found).sum())} training images; rerun st_hier")
    in_train = np.flatnonzero(usable)
    f_test, in_test = cached_features(feature_cache_path(cfg, "test"), test.img_id.to_numpy())
    if not in_test.all():
        raise FileNotFoundError(f"no cached features for {int((~in_test).sum())} test images; rerun st_hier")
    out = {
        "prior (most populated cell)": B.prior_baseline(parts[-1], lat, lon, with_ci=True),
        "best single point": B.single_point_baseline(tl, tn, lat, lon, with_ci=True),
        "label only (S3)": B.label_only_baseline(tl, tn, train.s3.to_numpy(), test.s3.to_numpy(), lat, lon, True),
        "label only (S16)": B.label_only_baseline(tl, tn, train.s16.to_numpy(), test.s16.to_numpy(), lat, lon, True),
        "kNN (frozen features)": B.knn_baseline(f_train, tl[in_train], tn[in_train], f_test, lat, lon, with_ci=True),
        "true-cell oracle": B.true_cell_oracle(parts[-1], lat, lon, with_ci=True),
        "nearest-cell-mean oracle": B.nearest_cell_oracle(parts[-1], lat, lon, with_ci=True),
    }
    out = {k: v.to_json_dict() for k, v in out.items()}
    write_json_atomic({"key": key, "partitioning": parts[-1].name, "baselines": out}, path)
    return out
