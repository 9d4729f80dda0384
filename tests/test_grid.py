"""The pieces of the experiment grid: equal-step sampling, auxiliary-label controls, geo labels on a share,
fine-tuning the last blocks on cached activations, label smoothing, the hierarchy's remedies, the verdict
and the generated conclusions."""

import json

import geomtl_core  # noqa: F401 - selects the torch backend
from geomtl_core.compendium import design, prose
from geomtl_core.compendium.verdict import decide
from geomtl_core.data.aux_labels import control_labels
from geomtl_core.data.loaders import EpochSampler, PairedBatchSampler
from geomtl_core.errors import InputError
from geomtl_core.geo import hierarchy_fixes as H
from geomtl_core.geo.partitioning import Hierarchy
from geomtl_core.geo.protocol import PRIMARY_KM

import keras
import numpy as np
import pandas as pd
import pytest
import torch
from toydata import make_toy_dataset, train_tiny_bundle


def test_sampler_total_reads_a_small_set_several_times():
    s = EpochSampler(10, seed=3, total=35)
    idx = s.indices()
    assert len(s) == 35 and len(idx) == 35
    counts = np.bincount(idx, minlength=10)
    assert counts.min() >= 3 and counts.max() <= 4  # whole permutations, then cut
    assert sorted(idx[:10]) == list(range(10))
    plain = EpochSampler(10, seed=3)
    assert plain.indices() == idx[:10]  # total = n reads exactly the old permutation


def _metas(n=400, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for split, m in (("train", n), ("val", n // 4)):
        out[split] = pd.DataFrame({"img_id": [f"{split}{i}" for i in range(m)], "lat": rng.uniform(-60, 70, m),
                                   "lon": rng.uniform(-180, 180, m), "s3": rng.choice(3, m, p=[0.6, 0.3, 0.1])})
    return out


def test_shuffled_control_keeps_each_split_marginal_and_breaks_the_pairing():
    metas = _metas()
    out = control_labels(metas, ["s3"], "shuffled", seed=1)
    for split in metas:
        assert sorted(out[split].s3) == sorted(metas[split].s3)
    assert (out["train"].s3.to_numpy() != metas["train"].s3.to_numpy()).mean() > 0.2
    assert metas["train"].s3.tolist() != out["train"].s3.tolist()
    assert control_labels(metas, ["s3"], "none", seed=1) is metas


def test_geographic_control_is_a_region_code_with_the_scene_marginal():
    metas = _metas()
    out = control_labels(metas, ["s3"], "geographic", seed=0)
    a, b = np.bincount(out["train"].s3, minlength=3), np.bincount(metas["train"].s3, minlength=3)
    assert np.abs(a - b).max() <= 1  # equal entropy (up to ties at a cut)
    # a function of location only: the same coordinates get the same code in every split
    val = metas["val"].copy()
    val[["lat", "lon"]] = metas["train"][["lat", "lon"]].to_numpy()[: len(val)]
    again = control_labels({"train": metas["train"], "val": val}, ["s3"], "geographic", seed=5)
    assert (again["val"].s3.to_numpy() == out["train"].s3.to_numpy()[: len(val)]).all()
    with pytest.raises(InputError, match="aux_control"):
        control_labels(metas, ["s3"], "random", seed=0)


@pytest.mark.parametrize("model", [{}, {"freeze_backbone": True}], ids=["images", "cached_features"])
def test_scene_on_all_keeps_geo_labels_on_the_share_only(tmp_path, model):
    data = make_toy_dataset(tmp_path / "toy", n_train=300, n_val=60)
    out = train_tiny_bundle(data, tmp_path / "run", data={"train_fraction": 0.3, "scene_on_all": True},
                            train={"samples_per_epoch": 64}, model=model)
    m = json.loads((out / "metrics.json").read_text())
    assert m["train_images"] == 300
    assert m["geo_labelled_images"] == 90
    assert len(open(out / "history.csv").read().splitlines()) == 2


def test_isn_subset_trains_on_one_scene_class(tmp_path):
    data = make_toy_dataset(tmp_path / "toy", n_train=300, n_val=60)
    out = train_tiny_bundle(data, tmp_path / "run", data={"subset_task": "s3", "subset_class": 1})
    meta = pd.read_csv(data / "train.csv")
    assert json.loads((out / "metrics.json").read_text())["train_images"] == int((meta.S3_Label == 1).sum())
    with pytest.raises(InputError, match="no training image"):
        train_tiny_bundle(data, tmp_path / "run2", data={"subset_task": "s3", "subset_class": 7})


def test_isn_starts_from_the_base_model(tmp_path):
    """``train.init_from``: a scene network starts from the base model's neck and heads (with a vanishing learning
    rate it ends there, where a run from scratch does not), and a run whose heads differ is refused. Catches an ISN
    that silently trains from scratch (the paper fine-tunes its ISNs from the base model)."""
    from geomtl_core.models.bundle import load_bundle

    data = make_toy_dataset(tmp_path / "toy", n_train=300, n_val=60)
    frozen = {"neck_units": 32, "freeze_backbone": True}
    base = train_tiny_bundle(data, tmp_path / "base", scene_tasks=(), model=frozen)
    still = {"epochs": 1, "batch_size": 32, "lr": 1e-12}
    subset = {"subset_task": "s3", "subset_class": 1}
    isn = train_tiny_bundle(data, tmp_path / "isn", scene_tasks=(), model=frozen, data=subset,
                            train={**still, "init_from": str(base)})
    scratch = train_tiny_bundle(data, tmp_path / "scratch", scene_tasks=(), model=frozen, data=subset, train=still)
    b, i, s = (load_bundle(x).model for x in (base, isn, scratch))
    for task in b.heads:
        np.testing.assert_allclose(i.heads[task].get_weights()[0], b.heads[task].get_weights()[0], rtol=0, atol=1e-8)
        assert not np.allclose(s.heads[task].get_weights()[0], b.heads[task].get_weights()[0], rtol=0, atol=1e-3)
    with pytest.raises(InputError, match="differ from this run's"):
        train_tiny_bundle(data, tmp_path / "mtl", scene_tasks=("s3",), model=frozen,
                          train={**still, "init_from": str(base)})


def test_the_two_arms_start_from_the_same_neck_and_geo_heads(tmp_path):
    """Pairing of a comparison's arms: single-task and multi-task runs of one seed start from identical neck and
    geo-head weights (with a vanishing learning rate they end there), although the multi-task model's frozen
    image twin draws a scene head first. Catches the unpaired start found before the reseed in the trainer
    (every geo weight differed between the arms)."""
    from geomtl_core.models.bundle import load_bundle

    data = make_toy_dataset(tmp_path / "toy", n_train=300, n_val=60)
    frozen = {"neck_units": 32, "freeze_backbone": True}
    still = {"epochs": 1, "batch_size": 32, "lr": 1e-12}
    st, mtl = (load_bundle(train_tiny_bundle(data, tmp_path / n, scene_tasks=t, model=frozen, train=still)).model
               for n, t in (("st", ()), ("mtl", ("s3",))))
    np.testing.assert_allclose(st.neck.get_weights()[0], mtl.neck.get_weights()[0], rtol=0, atol=1e-8)
    for task in st.heads:
        np.testing.assert_allclose(st.heads[task].get_weights()[0], mtl.heads[task].get_weights()[0], rtol=0,
                                   atol=1e-8)


@pytest.mark.parametrize("backbone", ["small_cnn", "efficientnet_lite0"])
def test_a_seeded_model_starts_the_same_whatever_else_draws_from_python_random(backbone):
    """A model built with a ``seed`` has the same initial weights however Python's shared ``random`` stands
    when it is built (another thread drawing from it, as a Dask worker's threads do), and its geo heads start
    the same with or without a scene head. Catches layers that draw their seed from ``random`` (found as tuned
    runs that differed on a Dask worker from run to run); without a seed the weights do differ."""
    import random

    from geomtl_core.models.multitask import GeoMTLModel

    def weights(seed, state, scene=None):
        random.seed(state)
        m = GeoMTLModel({"a": 5}, scene, backbone=backbone, input_size=32, pretrained=False, neck_units=8,
                        seed=seed)
        m(np.zeros((1, 32, 32, 3), "float32"))
        return {v.path.split("/", 1)[1]: keras.ops.convert_to_numpy(v) for v in m.weights
                if "seed_generator" not in v.path}  # paths without the model's own (numbered) name

    def same(a, b, keys=None):
        return all(np.array_equal(a[k], b[k]) for k in keys or a)

    a, b = weights(3, 1), weights(3, 2)
    assert a.keys() == b.keys() and same(a, b)
    mtl = weights(3, 5, {"s3": 3})
    assert same(a, mtl, [k for k in a if "head_a" in k or "neck" in k or "conv" in k])
    assert not same(weights(None, 1), weights(None, 2))

def _finetune_pair(blocks=2):
    from geomtl_core.models.multitask import GeoMTLModel

    kw = {"backbone": "efficientnet_lite0", "input_size": 64, "pretrained": False, "finetune_blocks": blocks,
          "neck_units": 16}
    keras.utils.set_random_seed(0)
    full = GeoMTLModel({"a": 5}, {"s3": 3}, **kw)
    act = GeoMTLModel({"a": 5}, {"s3": 3}, inputs="activations", **kw)
    return full, act


def test_finetune_trains_only_the_last_blocks_and_transfers_exactly(tmp_path):
    from geomtl_core.models.finetune import transfer_head_weights

    full, act = _finetune_pair()
    x = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3)).astype("uint8")
    full(x)
    acts = full.backbone_features(x)
    assert tuple(acts.shape) == (3, 192 * 2 * 2)
    act(acts)
    tuned = {w.path.split("/")[-2] for w in full.trainable_weights}
    assert any(n.startswith("block15_") for n in tuned) and any(n.startswith("block14_") for n in tuned)
    assert not any(n.startswith(("block13_", "stem_")) for n in tuned)
    assert len(act.trainable_weights) == len(full.trainable_weights)
    for w in act.trainable_weights:  # a trained tail, different from the full model's
        w.assign(w.numpy() + np.random.default_rng(1).normal(0, 0.05, w.shape).astype("float32"))
    transfer_head_weights(act, full)
    a, b, c = full(x), act(acts), full.heads_from_features(acts)
    for t in a:
        np.testing.assert_allclose(a[t].detach().numpy(), b[t].detach().numpy(), atol=2e-4)
        np.testing.assert_allclose(a[t].detach().numpy(), c[t].detach().numpy(), atol=2e-4)
    full.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_array_equal(back(x)["a"].detach().numpy(), a["a"].detach().numpy())
    with pytest.raises(InputError, match="finetune_blocks"):
        from geomtl_core.models.multitask import GeoMTLModel

        GeoMTLModel({"a": 5}, backbone="small_cnn", finetune_blocks=1)


def test_label_smoothing_is_the_mixture_with_uniform_targets():
    from geomtl_core.models.multitask import GeoMTLModel

    m = GeoMTLModel({"a": 4}, backbone="features", label_smoothing=0.2)
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5], [0.1, 0.2, 0.3, 0.4]])
    y = torch.tensor([0, 3])
    logp = torch.log_softmax(logits, -1)
    want = (-(0.8 * logp[[0, 1], y]) - 0.2 * logp.mean(-1)).mean()
    got = m.compute_loss(y={"a": y}, y_pred={"a": logits}, training=True)
    assert abs(float(got) - float(want)) < 1e-5
    plain = m.compute_loss(y={"a": y}, y_pred={"a": logits}, training=False)  # validation: the plain NLL
    assert abs(float(plain) - float(-logp[[0, 1], y].mean())) < 1e-5


def _toy_hierarchy():
    # 2 coarse cells, 4 fine cells: fine 0,1 in coarse 0; fine 2,3 in coarse 1
    return Hierarchy(matrix=np.array([[0, 0], [0, 1], [1, 2], [1, 3]]), orphans={})


def test_fine_head_summed_up_to_coarse_cells():
    p = np.array([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]])
    np.testing.assert_allclose(H.summed_up(p, _toy_hierarchy(), 0, 2), [[0.3, 0.7], [0.8, 0.2]])


def test_weights_zero_on_the_coarse_head_is_the_fine_head():
    rng = np.random.default_rng(0)
    coarse, fine = rng.dirichlet(np.ones(2), 50), rng.dirichlet(np.ones(4), 50)
    s = H.weighted_scores([coarse, fine], _toy_hierarchy(), [0.0, 1.0])
    assert (s.argmax(1) == fine.argmax(1)).all()
    prod = _toy_hierarchy().scores([coarse, fine])
    assert (H.weighted_scores([coarse, fine], _toy_hierarchy(), [1.0, 1.0]).argmax(1) == prod.argmax(1)).all()


def test_temperature_fit_softens_an_overconfident_head():
    rng = np.random.default_rng(0)
    n, k = 2000, 5
    target = rng.integers(0, k, n)
    right = rng.random(n) < 0.5  # right half of the time, yet 99% sure every time
    guess = np.where(right, target, (target + 1) % k)
    p = np.full((n, k), 0.01 / (k - 1))
    p[np.arange(n), guess] = 0.99
    assert H.fit_temperature(p, target) > 1.5
    calibrated = H.temper(np.log(p) * 0 + p, 1.0)
    np.testing.assert_allclose(calibrated, p)


def _verdict(diff, lo, hi, p):
    return pd.DataFrame([{"comparison": "mtl_vs_st", "model": "frozen", "data_fraction": 0.1, "aux_label": "s3",
                          "endpoint": f"acc_{PRIMARY_KM}km", "a_mean": 10.0, "b_mean": 10.0 + diff, "diff": diff,
                          "ci_lo": lo, "ci_hi": hi, "p": p, "n_seeds": 3, "n_blocks": 200}])


def test_conclusions_are_generated_from_the_verdict():
    up = decide(_verdict(1.5, 0.5, 2.5, 0.01))
    down = decide(_verdict(-1.5, -2.5, -0.5, 0.01))
    flat = decide(_verdict(0.3, -0.5, 1.1, 0.6))
    texts = [prose.conclusions(t, "smoke") for t in (up, down, flat)]
    assert "**helps**" in texts[0] and "**hurts**" in texts[1] and "**not resolved**" in texts[2]
    assert "+1.50 points [+0.50, +2.50]" in texts[0]
    assert len(set(texts)) == 3
    assert "1 helps" in prose.answer(up) and "1 hurts" in prose.answer(down)
    # an interval above 0 that does not survive Holm stays unresolved
    assert decide(_verdict(1.5, 0.5, 2.5, 0.2)).loc[0, "verdict"] == "not resolved"


def test_grid_cells_cover_every_axis_at_the_default_scale():
    """The default grid still asks every question of the design, if on one split: a model whose backbone is frozen
    and one whose backbone learns (the small CNN from scratch; the tuned blocks at the smoke and full scales, as
    book/method.md declares), three shares, the scene labels and both controls. Catches a budget cut that
    silently drops an axis."""
    cs = design.cells("default")
    models = {c.model for c in cs}
    assert "frozen" in models and any(m.startswith("cnn_w") for m in models)
    assert all("tuned" in {c.model for c in design.cells(s)} for s in ("smoke", "full"))
    assert len({c.fraction for c in cs}) >= 3
    assert {"st", "s3", "s16"} <= {c.aux for c in cs}
    rows = design.comparisons("default")
    labels = {r[0] for r in rows}
    assert any("shuffled" in x for x in labels) and any("geographic" in x for x in labels)
    for _, a, b in rows:
        assert a in cs and b in cs and a != b
    assert len({c.name for c in cs}) == len(cs)


def test_the_confirmatory_family_is_the_cheapest_design_that_meets_the_target():
    """The default scale's confirmatory rows (multi-task against single-task at the smallest and the largest
    share, and a model whose backbone learns) run on the folds and seeds of the power plan's cheapest design
    whose mde at alpha / 3 is at most 2 points, never on fold 8, both arms of each row cross-validated together,
    with the A/A cell's second seed; every other verdict row is exploratory. Catches a scale edited away from its
    declared design, a confirmatory row left on one split, and a family that grew beyond its declared rows."""
    from geomtl_core.compendium.scales import scale_params

    p = scale_params("default")
    conf = design.confirmatory_cells("default")
    chosen = next(r for r in design.power_plan("frozen", m=len(conf)) if r["meets"])
    assert (len(p["seeds"]), len(p["cv"]["folds"])) == (chosen["seeds"], chosen["folds"])
    assert chosen["mde"] <= design.TARGETS["mde"] and 8 not in p["cv"]["folds"]
    assert len(set(p["cv"]["folds"])) == len(p["cv"]["folds"]) and 9 in p["cv"]["folds"]
    shares = sorted({c.fraction for c in design.cells("default")})
    assert {(c.model, c.fraction) for c in conf} >= {("frozen", shares[0]), ("frozen", shares[-1])}
    assert any(c.model != "frozen" for c in conf)
    cv = {design.Cell(*c) for c in p["cv"]["cells"]}
    rows = design.comparisons("default")
    fams = {(a, b): design.family(label, b, "default") for label, a, b in rows}
    confirmatory = [(a, b) for (a, b), f in fams.items() if f == design.CONFIRMATORY]
    assert {b for _, b in confirmatory} == set(conf) and len(confirmatory) == len(conf)
    assert all(a in cv and b in cv for a, b in confirmatory)
    aa = design.aa_cell("default")
    assert aa in cv and len(design.experiment_seeds("default", aa.name)) == 2
    assert {design.role(f) for (a, b), f in fams.items() if (a, b) not in confirmatory} == {"exploratory"}
    assert all(design.cv_folds("default", c.name) == p["cv"]["folds"] for c in cv if c.model == "frozen")
    # the small CNN: the most folds there are, both arms on the same 2 seeds (what the budget holds): fewer than
    # its own pilot's cheapest design meeting the target needs, so its row is declared short of the target
    # (book/method.md); every other cross-validated cell but the A/A one keeps the scale's seeds
    cnn = [c for c in cv if c.model.startswith("cnn")]
    assert cnn and all(sorted(design.cv_folds("default", c.name)) == sorted({*range(design.MAX_FOLDS + 1)} - {8})
                       for c in cnn)
    pilot = design.PILOT["cnn"]
    need = next(s for s in range(1, 10) if design.projection(pilot["within"], pilot["between"], s, design.MAX_FOLDS,
                                                             m=len(conf))["mde"] <= design.TARGETS["mde"])
    assert {tuple(design.experiment_seeds("default", c.name)) for c in cnn} == {(0, 1)} and need > 2
    assert all(design.experiment_seeds("default", c.name) == p["seeds"] for c in cv
               if c.model == "frozen" and c != aa)


def test_direction_against_the_paper_in_words():
    from geomtl_core.compendium.paper_claims import direction

    row = {"diff": 1.0, "ci_lo": 0.2, "ci_hi": 1.8, "paper_diff": 2.0, "paper_ci_lo": 0.5, "paper_ci_hi": 3.0}
    assert direction(row) == "same direction"
    assert direction(row | {"paper_diff": -2.0, "paper_ci_lo": -3.0, "paper_ci_hi": -0.5}) == "opposite direction"
    assert direction(row | {"paper_ci_lo": -0.5}) == "same sign, not resolved (paper interval includes 0)"
    assert direction(row | {"diff": -0.1, "ci_lo": -1.0, "paper_ci_lo": -0.5}) == \
        "opposite sign, not resolved (proxy and paper interval includes 0)"
    assert direction(row | {"paper_diff": float("nan")}) == "no published counterpart"
    assert direction(row | {"paper_diff": 0.0, "paper_ci_lo": -1.0}).startswith("a zero difference")
    # the proxy's direction needs its Holm p over the claims at that distance, where the row has one
    assert direction(row | {"p_holm": 0.01}) == "same direction"
    assert direction(row | {"p_holm": 0.2}).endswith("but not after Holm over the claims)")


def test_published_isn_minus_base_on_im2gps(shared):
    """The paper column of the trend table, computed from GeoEstimation's published per-image predictions."""
    from geomtl_core.compendium.statistics import compare_files

    ref = shared / "geoestimation/results/im2gps"
    d = compare_files([ref / "ISNs_M-fstar-S3.csv"], [ref / "base_M-fstar.csv"], n_boot=500)  # ISNs − base
    # published summaries: base(M, f*) 15.2/40.9/51.5/65.4/78.5, ISNs 16.9/43.0/51.9/66.7/80.2 on 237 images
    np.testing.assert_allclose(100 * d.diff, [1.69, 2.11, 0.42, 1.27, 1.69], atol=0.01)
    assert (d.ci[:, 0] <= d.diff).all() and (d.diff <= d.ci[:, 1]).all()


def test_scene_on_all_needs_cells_from_the_whole_training_split(tmp_path):
    data = make_toy_dataset(tmp_path / "toy", n_train=120, n_val=30)
    with pytest.raises(InputError, match="from_full_train"):
        train_tiny_bundle(data, tmp_path / "run", data={"train_fraction": 0.5, "scene_on_all": True},
                          partition={"from_full_train": False})


def test_answer_without_multitask_rows_says_so():
    flat = _verdict(0.3, -0.5, 1.1, 0.6).assign(comparison="koppen_geographic_label_vs_st", verdict="not resolved")
    assert prose.answer(flat).startswith("Not answered")


@pytest.mark.parametrize("alt_acc, expected", [(0.50, "alternative"), (0.40, "scale"), (0.30, "scale")])
def test_partition_granularity_is_chosen_on_validation(tmp_path, monkeypatch, alt_acc, expected):
    """The recipe's second step: the alternative granularity replaces the scale's only when its validation
    accuracy is higher (a tie keeps the scale's), the choice is recorded, and the ablation is the other one.
    Catches a choice made on test numbers (the fake runs' test accuracy points the other way) and an ablation
    that repeats the chosen granularity."""
    from geomtl_core.compendium import grid

    def fake_run_once(name, scale, overrides, root, verbose=0):
        val = {"recipe/regularised_2ep": 0.40}.get(name, alt_acc if "alternative" in name else 0.20)
        test = 1.0 - val  # test numbers that would choose the other way
        m = lambda a: {"methods": {"hierarchy": {f"acc_{PRIMARY_KM}km": a}}, "best": "hierarchy"}  # noqa: E731
        return {"val": m(val), "test": m(test), "train_time_s": 1.0, "overrides": overrides}

    monkeypatch.setattr(grid.R, "run_once", fake_run_once)
    over = grid.recipe("smoke", tmp_path)
    chosen = json.loads((tmp_path / "results" / "smoke" / "recipe" / "chosen.json").read_text())
    assert chosen["chosen"] == "regularised_2ep" and chosen["partition"] == expected
    parts = grid.partitions("smoke")
    assert over.get("partition") == (parts["alternative"]["partition"] if expected == "alternative" else None)
    assert grid.other_partition("smoke", tmp_path) == parts["scale" if expected == "alternative" else "alternative"]


def test_each_learning_arm_gets_its_epochs_and_scene_weight_on_validation(tmp_path, monkeypatch):
    """Per arm of a model whose backbone learns: the single-task arm chooses its epochs, the multi-task arm its
    epochs and scene weight, each by its own validation accuracy (not the other arm's, not test), recorded; a
    frozen cell keeps the scale's recipe. Catches one arm's choice applied to both and a choice by test."""
    from geomtl_core.compendium import grid

    def fake_run_once(name, scale, overrides, root, verbose=0):
        e, w = overrides["train"]["epochs"], overrides.get("model", {}).get("scene_weight", 1.0)
        tasks = overrides.get("data", {}).get("scene_tasks")
        val = 0.1 * e if not tasks or "recipe" in name else 0.3 - 0.1 * e + 0.1 * w  # st: long; s3: short, w=1
        m = lambda a: {"methods": {"hierarchy": {f"acc_{PRIMARY_KM}km": a}}, "best": "hierarchy"}  # noqa: E731
        return {"val": m(val), "test": m(1.0 - val), "train_time_s": 1.0}

    monkeypatch.setattr(grid.R, "run_once", fake_run_once)
    monkeypatch.setattr(grid, "steps_budget", lambda scale, root=None: 100)
    st, s3 = design.Cell("tuned", 1.0, "st"), design.Cell("tuned", 1.0, "s3")
    assert grid.arm_overrides(st, "smoke", tmp_path) == {"train": {"epochs": 2}}
    assert grid.arm_overrides(s3, "smoke", tmp_path) == {"train": {"epochs": 1}, "model": {"scene_weight": 1.0}}
    rec = json.loads((tmp_path / "results" / "smoke" / "arms" / f"{s3.name}.chosen.json").read_text())
    assert rec["chosen"] == f"{s3.name}-e1-w1" and len(rec["candidates"]) == 4
    assert grid.arm_overrides(design.Cell("frozen", 1.0, "s3"), "smoke", tmp_path) == {}


def test_the_plan_peeks_at_the_choices_the_runners_record_and_trains_nothing(tmp_path, monkeypatch):
    """``peek`` (what ``runner --dry-run`` composes its runs with) trains nothing, assumes the declared recipe and
    an arm's first candidate before any choice is recorded, and afterwards gives exactly the overrides the
    runners train with (recipe, partition granularity, arm, the named single-task runs). Catches a plan that
    drifts from the book, e.g. one that ignores a recorded arm choice or the chosen partition."""
    from geomtl_core.compendium import grid, paper_claims

    calls = []

    def fake_run_once(name, scale, overrides, root, verbose=0):
        calls.append(name)
        e, w = overrides["train"]["epochs"], overrides.get("model", {}).get("scene_weight", 1.0)
        val = {"recipe/regularised_1ep": 0.4}.get(name, 0.5 if "alternative" in name else 0.2)
        val = 0.1 * e + 0.1 * w if name.startswith("arms/") else val  # the last candidate wins
        m = lambda a: {"methods": {"hierarchy": {f"acc_{PRIMARY_KM}km": a}}, "best": "hierarchy"}  # noqa: E731
        return {"val": m(val), "test": m(1.0 - val), "train_time_s": 1.0}

    monkeypatch.setattr(grid.R, "run_once", fake_run_once)
    monkeypatch.setattr(grid, "steps_budget", lambda scale, root=None: 100)
    cell = design.Cell("tuned", 1.0, "s3")
    peek = lambda: (grid.recipe("smoke", tmp_path, peek=True),  # noqa: E731
                    grid.named_overrides("smoke", grid.cell_run_overrides(cell, "smoke", tmp_path, peek=True),
                                         tmp_path, peek=True),
                    paper_claims.single_partition_runs("smoke", tmp_path, peek=True)
                    | paper_claims.granularity_ablation("smoke", tmp_path, peek=True))
    before = peek()
    assert calls == [] and before[0] == design.RECIPES[design.PLANNED_RECIPE]
    assert before[1]["train"]["epochs"] == 1 and before[1]["model"]["scene_weight"] == 0.5  # the first candidate
    trained = (grid.recipe("smoke", tmp_path),
               grid.named_overrides("smoke", grid.cell_run_overrides(cell, "smoke", tmp_path), tmp_path),
               paper_claims.single_partition_runs("smoke", tmp_path)
               | paper_claims.granularity_ablation("smoke", tmp_path))
    assert calls and trained[1]["model"]["scene_weight"] == 1.0 and trained[1]["train"]["epochs"] == 2
    assert trained[0]["partition"] == grid.partitions("smoke")["alternative"]["partition"]
    n = len(calls)
    assert peek() == trained and peek() != before and len(calls) == n


def test_paired_batches_hold_the_single_task_order_beside_auxiliary_only_images():
    """Each batch: the share's geo-labelled rows in the single-task run's order at that step, then as many rows
    without geo labels, drawn without repeats while they last. Catches a scene-on-all run whose geo supervision
    is diluted or reordered against the single-task arm it is compared with."""
    rng = np.random.default_rng(0)
    geo = np.zeros(100, bool)
    geo[rng.choice(100, 30, replace=False)] = True
    s = PairedBatchSampler(geo, seed=4, batch=8, total=64)
    single = EpochSampler(30, seed=4, total=64)
    for epoch in (0, 3):
        s.set_epoch(epoch)
        single.set_epoch(epoch)
        batches, st = list(s), single.indices()
        assert len(batches) == len(s) == 8
        for k, b in enumerate(batches):
            assert b[:8] == np.flatnonzero(geo)[st[8 * k:8 * k + 8]].tolist()
            assert len(b) == 16 and not geo[b[8:]].any()
        extra = [i for b in batches for i in b[8:]]
        assert len(set(extra)) == len(extra) == 64  # 70 auxiliary-only rows: no repeats within an epoch
    s.set_epoch(0)
    assert list(s) != batches  # the epoch changes the order


def test_a_scene_on_all_run_reads_the_single_task_runs_geo_images_at_every_step(tmp_path):
    """The trainer's own training split (:func:`training_split`) for the two arms of a scene-on-all comparison:
    the geo-labelled images of every batch are the single-task run's, in its order; the other images carry no geo
    target. Catches the trainer building the scene-on-all loader without pairing (geo labels diluted)."""
    from geomtl_core.config import ExperimentConfig
    from geomtl_core.data.loaders import load_tables, make_partitionings, training_rows, training_split

    data = make_toy_dataset(tmp_path / "toy", n_train=300, n_val=60)
    base = {"data": {"root": str(data), "image_size": 32, "workers": 0, "scene_tasks": ["s3"], "train_fraction": 0.3},
            "partition": {"tau_min": 5, "tau_max": [200, 100, 60]}, "train": {"batch_size": 16, "seed": 2,
                                                                              "samples_per_epoch": 160}}
    arms = {}
    for name, on_all in (("single", False), ("on_all", True)):
        cfg = ExperimentConfig.from_dict({**base, "data": {**base["data"], "scene_on_all": on_all}})
        tables = load_tables(cfg, ("train",))
        meta, geo_rows = training_rows(cfg, tables["train"])
        parts = make_partitionings(cfg, tables["train"])
        split, n_geo = training_split(cfg, meta, geo_rows, parts)
        order = split.loader.batch_sampler
        order = order if hasattr(order, "set_epoch") else split.loader.sampler
        order.set_epoch(1)
        rows = list(split.loader.batch_sampler)
        arms[name] = (split.labels, rows, n_geo)
    (st_labels, st_rows, st_n), (labels, rows, n) = arms["single"], arms["on_all"]
    assert st_n == n == 90 and len(rows) == len(st_rows) == 10
    fine = parts[-1].name
    for st_b, b in zip(st_rows, rows, strict=True):
        assert labels.img_id[b[:16]].tolist() == st_labels.img_id[st_b].tolist()
        assert (labels.targets[fine][b[:16]] >= 0).all() and (labels.targets[fine][b[16:]] == -1).all()


@pytest.mark.parametrize(("word", "says"), [("helps", "can see effects"), ("hurts", "did not supply the help"),
                                            ("not resolved", "**the design is underpowered**")])
def test_the_answer_reads_its_positive_controls(word, says):
    """A positive control resolved either way shows the design can see an effect; only one left unresolved makes
    the answer call the design underpowered. Catches a hurting control reported as lack of power (or the reverse)."""
    primary = _verdict(0.3, -0.5, 1.1, 0.6).assign(family="confirmatory", verdict="not resolved", mde=2.0)
    control = _verdict(3.0, 1.0, 5.0, 0.01).assign(family="positive_control", comparison="region_code_on_all_vs_st",
                                                  verdict=word, mde=2.0)
    text = prose.answer(pd.concat([primary, control], ignore_index=True))
    assert says in text
    assert ("underpowered" in text) == (word == "not resolved")


def test_the_plan_counts_the_retrieval_scoring_of_a_retrieval_run():
    """A run that scores the hybrid and kNN (``train.retrieval``) is planned longer by the retrieval's cost (the
    declared constant, or the scale's measured median); otherwise the same run is not. Catches a plan that
    leaves the retrieval runs' extra half minute out of the book's time."""
    from geomtl_core.compendium import plan as P
    from geomtl_core.compendium.runs import RunUnit
    from geomtl_core.config import deep_merge

    over = {"model": {"freeze_backbone": True}, "train": {"epochs": 2, "seed": 0}}
    units = [RunUnit("x", "smoke", deep_merge(over, {"train": {"retrieval": r}}), "x", 0) for r in (False, True)]
    plain, scored = (P._estimate(u, "smoke", 1000, {}) for u in units)
    assert scored - plain == pytest.approx(P.RETRIEVAL_S)
    plain, scored = (P._estimate(u, "smoke", 1000, {"retrieval": 7.0}) for u in units)
    assert scored - plain == pytest.approx(7.0)
