"""``geomtl compare`` and the statistics module: paired block bootstrap, p-values, Holm."""

import json

from geomtl_core.cli import main
from geomtl_core.geo.stats import block_bootstrap, hierarchical_bootstrap, holm, spatial_blocks

import numpy as np
import pandas as pd
import pytest

IM2GPS = "geoestimation/results/im2gps"


def _published(shared, name):
    """Rows of a published per-image file (before its blank line and summary)."""
    lines = (shared / IM2GPS / name).read_text().split("\n\n")[0]
    from io import StringIO

    return pd.read_csv(StringIO(lines)).set_index("img_id")


def test_compare_reproduces_an_independent_block_bootstrap(shared, capsys):
    a_file, b_file = shared / IM2GPS / "ISNs_M-fstar-S3.csv", shared / IM2GPS / "base_M-fstar.csv"
    assert main(["compare", str(a_file), str(b_file), "--json", "--n-boot", "4000", "--seed", "1"]) == 0
    res = json.loads(capsys.readouterr().out)
    a, b = _published(shared, "ISNs_M-fstar-S3.csv"), _published(shared, "base_M-fstar.csv").loc[
        _published(shared, "ISNs_M-fstar-S3.csv").index]
    # independent: 5-degree blocks by explicit keys, a Python loop over replicates, images concatenated
    key = [(int(np.floor((la + 90) / 5)), int(np.floor((lo + 180) / 5)))
           for la, lo in zip(a.gt_lat, a.gt_long, strict=True)]
    groups: dict = {}
    for i, k in enumerate(key):
        groups.setdefault(k, []).append(i)
    members = list(groups.values())
    assert res["n"] == len(a) == 237 and res["n_blocks"] == len(members) and res["block_deg"] == 5.0
    rng = np.random.default_rng(12345)
    for t in (1, 25, 200, 750, 2500):
        ha = (a.great_circle_distance.to_numpy() <= t).astype(float)
        hb = (b.great_circle_distance.to_numpy() <= t).astype(float)
        r = res["thresholds_km"][str(t)]
        assert r["acc_a"] == pytest.approx(ha.mean(), abs=1e-9) and r["acc_b"] == pytest.approx(hb.mean(), abs=1e-9)
        assert r["diff"] == pytest.approx(ha.mean() - hb.mean(), abs=1e-9)  # exact difference
        reps = []
        for _ in range(3000):
            idx = np.concatenate([members[j] for j in rng.integers(0, len(members), len(members))])
            reps.append(ha[idx].mean() - hb[idx].mean())
        lo, hi = np.quantile(reps, [0.025, 0.975])
        se = np.std(reps)
        # percentile endpoints agree within Monte Carlo error (a fraction of the bootstrap s.e.)
        assert abs(r["ci95"][0] - lo) < 0.25 * se and abs(r["ci95"][1] - hi) < 0.25 * se
        assert 0 <= r["p"] <= r["p_holm"] <= 1
    # the published ISN gain is inside every interval here: not resolved on 237 images in 123 blocks
    assert all(v["ci95"][0] < 0 < v["ci95"][1] for v in res["thresholds_km"].values())


def test_compare_refuses_mismatched_ids(shared, tmp_path, capsys):
    b = _published(shared, "base_M-fstar.csv").reset_index().iloc[:-5]
    b.to_csv(tmp_path / "b.csv", index=False)
    assert main(["compare", str(shared / IM2GPS / "base_M-m.csv"), str(tmp_path / "b.csv")]) == 2
    err = capsys.readouterr().err
    assert "5 ids only in" in err and "e.g." in err


def test_compare_a_file_with_itself_is_exactly_null(shared, capsys):
    f = str(shared / IM2GPS / "base_M-m.csv")
    assert main(["compare", f, f, "--json", "--n-boot", "200"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert all(v["diff"] == 0 and v["ci95"] == [0, 0] and v["p"] == 1 for v in res["thresholds_km"].values())


def test_holm_matches_a_hand_computed_example():
    # p sorted 0.01 (x3), 0.03 (x2 -> 0.06), 0.04 (x1 -> 0.04, raised to the running max 0.06)
    assert holm([0.04, 0.01, 0.03]).tolist() == pytest.approx([0.06, 0.03, 0.06])
    assert holm([0.5, 0.9]).tolist() == pytest.approx([1.0, 1.0])  # 2 x 0.5 = 1, then the running max
    assert holm([0.001, 0.2, 0.02]).tolist() == pytest.approx([0.003, 0.2, 0.04])


def test_block_bootstrap_is_wider_than_iid_for_clustered_data():
    """Ten cities of 50 images that share their outcome: blocks know there are only ten draws."""
    rng = np.random.default_rng(0)
    city = np.repeat(np.arange(10), 50)
    values = rng.integers(0, 2, 10)[city].astype(float)
    lat, lon = city * 10.0 - 45, city * 20.0 - 100
    iid = block_bootstrap(values, None, n_boot=2000).std()
    blocked = block_bootstrap(values, spatial_blocks(lat, lon), n_boot=2000).std()
    assert blocked > 4 * iid
    assert blocked == pytest.approx(values.reshape(10, 50)[:, 0].std() / np.sqrt(10), rel=0.15)


def test_hierarchical_bootstrap_carries_seed_variance():
    """Seeds that disagree widen the interval beyond the block-only one of their average."""
    rng = np.random.default_rng(0)
    n = 400
    blocks = np.repeat(np.arange(40), 10)
    base = rng.random(n) < 0.5
    seeds = np.stack([base ^ (rng.random(n) < 0.3 * s) for s in range(3)]).astype(float)
    h = hierarchical_bootstrap(seeds, blocks, n_boot=1000).std()
    b = block_bootstrap(seeds.mean(0), blocks, n_boot=1000).std()
    assert h > b
