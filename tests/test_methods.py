"""The method comparisons of the retrieval chapter (``methods.csv``): which runs score the hybrid, the sign and
pairing of each row, its Holm family, and the cost table's Pareto front."""

import json
from pathlib import Path

from geomtl_core.compendium import tables
from geomtl_core.compendium.design import AUX, method_comparisons, retrieval_cells
from geomtl_core.compendium.runs import experiment_units
from geomtl_core.compendium.verdict import methods_table
from geomtl_core.config import ExperimentConfig
from geomtl_core.data.predictions import write_predictions
from geomtl_core.errors import InputError
from geomtl_core.geo.protocol import PRIMARY_KM

import numpy as np
import pandas as pd
import pytest

SCALE = "smoke"
K = PRIMARY_KM / 200
"""The fake runs' distances were written for a 200 km endpoint: scaled to the protocol's."""


def test_the_declared_cells_score_the_hybrid_under_every_name(tmp_path):
    """A retrieval cell's runs turn ``train.retrieval`` on whether a notebook asks by the legacy name (st_hier)
    or the grid by its cell name, on every seed; other cells' runs do not. Catches the named run and the grid
    cell training two different configs under one name (a retrain that overwrites the other)."""
    names = {c.name for c in retrieval_cells(SCALE)}
    assert {"st_hier", "mtl_s3"} <= names
    for unit in experiment_units("st_hier", SCALE, AUX["st"], tmp_path):
        assert unit.overrides["train"]["retrieval"] is True
    for unit in experiment_units("cnn_w25-f100-st", SCALE, AUX["st"], tmp_path):
        assert "retrieval" not in unit.overrides.get("train", {})


def test_retrieval_needs_a_backbone_frozen_below_its_tuned_blocks_on_cached_features():
    """The embeddings are made from the feature cache: a run whose backbone learns whole, or without the cache,
    is refused with the reason; frozen and tuned-blocks runs are accepted."""
    for model, train in (({"freeze_backbone": False}, {}), ({"freeze_backbone": True}, {"cache_features": False})):
        with pytest.raises(InputError, match=r"train\.retrieval=True needs a backbone frozen at least below"):
            ExperimentConfig.from_dict({"train": {"retrieval": True, **train}, "model": model})
    ExperimentConfig.from_dict({"train": {"retrieval": True}, "model": {"freeze_backbone": True}})
    ExperimentConfig.from_dict({"train": {"retrieval": True}, "model": {"freeze_backbone": False,
                                                                       "finetune_blocks": 2}})


def _fake_run(root: Path, name: str, shifts_km: dict[str, float], seeds=(0, 1, 2)):
    """Per-seed per-method prediction files (each method's predictions ``shifts_km[method]`` east of the truth,
    plus per-seed noise) and a result file whose best method is ``hierarchy``."""
    rng = np.random.default_rng(0)
    lat = np.repeat(np.linspace(-60, 60, 30), 10) + rng.normal(0, 0.2, 300)
    lon = np.tile(np.linspace(-170, 170, 10), 30) + rng.normal(0, 0.2, 300)
    ids = np.array([f"img{k:04d}" for k in range(300)])
    runs = {}
    for s in seeds:
        run = name if s == seeds[0] else f"{name}.s{s}"
        for m, shift in shifts_km.items():
            d = K * (shift + 20 * np.random.default_rng(s).normal(0, 1, 300))
            write_predictions(root / "runs" / SCALE / run / f"predictions_test.{m}.csv", ids, lat, lon, lat,
                              (lon + d / (111.2 * np.cos(np.radians(lat))) + 180) % 360 - 180)
        runs[str(s)] = run
    (root / "results" / SCALE).mkdir(parents=True, exist_ok=True)
    test = {"best": "hierarchy", "methods": {m: {} for m in shifts_km}}
    (root / "results" / SCALE / f"{name}.json").write_text(json.dumps({"name": name, "seeds": runs, "test": test}))


def test_each_row_is_b_minus_a_of_the_named_methods_in_its_own_family(tmp_path):
    """Within a cell the hybrid (every image near) beats f* (every image far): hybrid − f* is ~+100 points and
    "helps", kNN (= f*) against f* is exactly 0; across cells the scene task's row compares the hybrid of s3
    with the hybrid of st. Catches a flipped sign, "fstar" not mapped to the run's best method, a method file
    read from the wrong run, and rows leaking into the verdict's families."""
    for c in retrieval_cells(SCALE):
        hybrid = 100.0 if c.aux == "s3" else 190.0  # s3: every image within the endpoint; st: about 70%
        _fake_run(tmp_path, c.name, {"hierarchy": 260.0, "knn": 260.0, "hybrid": hybrid})
    table = methods_table(SCALE, tmp_path, n_boot=300)
    assert len(table) == len(method_comparisons(SCALE)) and set(table["family"]) == {"methods"}
    assert (tmp_path / "results" / SCALE / "methods.csv").exists()
    by = {(r.comparison, r.b_run): r for r in table.itertuples()}
    h = by["hybrid_vs_fstar", "mtl_s3"]
    assert h.diff == pytest.approx(100.0, abs=2) and h.verdict == "helps" and h.a_method == "fstar"
    k = by["knn_vs_fstar", "st_hier"]
    assert k.diff == 0 and k.ci_lo == 0 and k.ci_hi == 0
    assert by["hybrid_vs_knn", "mtl_s3"].diff == pytest.approx(by["hybrid_vs_fstar", "mtl_s3"].diff)
    scene = by["mtl_vs_st_hybrid", "mtl_s3"]
    assert scene.a_run == "st_hier" and scene.a_method == scene.b_method == "hybrid"
    assert 15 < scene.diff < 50 and scene.b_mean > scene.a_mean
    knn = by["mtl_vs_st_knn", "mtl_s3"]  # kNN equal in both runs: exactly 0
    assert knn.a_run == "st_hier" and knn.a_method == knn.b_method == "knn" and knn.diff == 0


def test_the_pareto_front_keeps_only_unbeaten_rows():
    """A row is on the front unless another is at most as costly and at least as accurate (strictly better in one);
    ties keep both. Catches a front that drops ties or keeps a dominated row."""
    cost = np.array([10.0, 10.0, 20.0, 5.0, 30.0])
    acc = np.array([30.0, 30.0, 29.0, 20.0, 31.0])
    assert tables.pareto_front(cost, acc).tolist() == [True, True, False, True, True]


def test_the_embedding_sentence_counts_the_settings_tables_choices():
    """The words about the embedding count each method's own column (old results without one count as the
    backbone's, as the table fills them in). Catches hybrid and kNN columns swapped and a count off the table."""
    from geomtl_core.compendium.prose import embedding_choice

    table = pd.DataFrame({"hybrid: embedding": ["neck", "neck", "backbone"],
                          "kNN: embedding": ["backbone", "backbone", "backbone"]})
    text = embedding_choice(table)
    assert "hybrid took the trained neck's embedding in 2 of 3 cells and the backbone's pooled features in 1" in text
    assert "kNN took the trained neck's embedding in 0 of 3 cells and the backbone's pooled features in 3" in text
    assert embedding_choice(pd.DataFrame()) == "No retrieval cell has been scored at this scale."


def test_the_method_words_name_the_model_of_each_row():
    """Two cells that differ only by model (frozen and tuned at 100%, s3) get two distinguishable lines, and the
    best method per share names its model. Catches rows a reader cannot tell apart once tuned cells are scored."""
    from geomtl_core.compendium.prose import methods_answer

    row = {"comparison": "hybrid_vs_fstar", "aux_label": "s3", "data_fraction": 1.0, "p_holm": 0.01, "n_seeds": 3,
           "n_folds": 1, "diff": 5.0, "ci_lo": 1.0, "ci_hi": 9.0, "mde": 4.0, "verdict": "helps"}
    methods = pd.DataFrame([row | {"model": "frozen", "a_run": "mtl_s3", "b_run": "mtl_s3", "diff": 4.0},
                            row | {"model": "tuned", "a_run": "tuned-f100-s3", "b_run": "tuned-f100-s3"}])
    acc = f"acc {PRIMARY_KM} km %"
    cost = pd.DataFrame([{"run": r, "share": "100%", "model": m, "aux": "s3", "method": meth, acc: a,
                          "ci95 low": a - 2, "ci95 high": a + 2}
                         for r, m, meth, a in (("mtl_s3", "frozen", "hybrid", 45.0),
                                               ("tuned-f100-s3", "tuned", "hybrid", 47.0))])
    text = methods_answer(methods, cost)
    assert r"the hybrid against f\* (frozen, s3, 100%): +4.00" in text  # f\*: markdown shows f*
    assert r"the hybrid against f\* (tuned, s3, 100%): +5.00" in text
    assert "the most accurate is hybrid (tuned, s3, 47.0%" in text
