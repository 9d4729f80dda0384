"""Retrieval and the hybrid predictor (classifier narrows, retrieval refines) on small synthetic spheres whose
embeddings track distance: random Fourier features of the location, so cosine similarity falls with km."""

import geomtl_core  # noqa: F401 - selects the torch backend
from geomtl_core.errors import InputError
from geomtl_core.geo import baselines as B
from geomtl_core.geo import retrieval as R
from geomtl_core.geo.geodesy import EARTH_RADIUS_KM, haversine_km, to_unit_vectors

import numpy as np
import pytest

DIM = 64


def _embed(lat, lon, seed, noise=0.05, bandwidth_km=800.0):
    """Random Fourier features of the 3-D position (one fixed projection): similarity ~ a Gaussian of distance."""
    proj = np.random.default_rng(1234)
    w, b = proj.normal(0, 1 / bandwidth_km, (DIM, 3)), proj.uniform(0, 2 * np.pi, DIM)
    f = np.cos(to_unit_vectors(lat, lon) * EARTH_RADIUS_KM @ w.T + b)
    return (f + np.random.default_rng(seed).normal(0, noise, f.shape)).astype(np.float32)


def _sphere(n, seed):
    """n points uniform on the sphere."""
    r = np.random.default_rng(seed)
    return np.degrees(np.arcsin(r.uniform(-1, 1, n))), r.uniform(-180, 180, n)


def _bins(lat, lon):
    """30 x 30 degree cells: 6 latitude bands x 12 longitude sectors = 72 classes."""
    return np.clip((np.asarray(lat) + 90) // 30, 0, 5).astype(np.int64) * 12 \
        + np.clip((np.asarray(lon) + 180) // 30, 0, 11).astype(np.int64)


def _unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def world():
    """A global gallery in 30-degree cells (rows given unsorted by cell) and global queries."""
    glat, glon = _sphere(500, 0)
    qlat, qlon = _sphere(120, 1)
    gemb, qemb = _embed(glat, glon, 10), _embed(qlat, qlon, 11)
    return dict(g=R.Gallery.build(gemb, glat, glon, _bins(glat, glon), n_cells=72), gemb=gemb, glat=glat, glon=glon,
                q=qemb, qlat=qlat, qlon=qlon)


@pytest.fixture(scope="module")
def lookalikes():
    """Two far-apart regions with the same embeddings for the same offset from their centre (retrieval alone cannot
    tell them apart); ``probs``: a classifier that ranks the true cell first (0.85), the look-alike's second (0.1);
    ``mixed``: one that ranks the look-alike first (0.5 to 0.45) for the first 30% of the images."""
    centres = np.array([(45.0, 15.0), (-45.0, 135.0)])  # cells 4*12+6 and 1*12+10

    def draw(n, seed):
        r = np.random.default_rng(seed)
        region = r.integers(0, 2, n)
        dlat, dlon = r.uniform(-5, 5, n), r.uniform(-5, 5, n)
        return centres[region, 0] + dlat, centres[region, 1] + dlon, _embed(dlat, dlon, seed + 100), region

    glat, glon, gemb, _ = draw(400, 0)
    qlat, qlon, qemb, region = draw(200, 1)
    true, other = _bins(centres[region, 0], centres[region, 1]), _bins(centres[1 - region, 0], centres[1 - region, 1])
    rows = np.arange(len(qlat))
    probs = np.full((len(qlat), 72), 0.05 / 70)
    probs[rows, true], probs[rows, other] = 0.85, 0.1
    mixed = probs.copy()
    mixed[rows, true], mixed[rows, other] = np.where(rows < 0.3 * len(rows), [[0.45], [0.5]], [[0.85], [0.1]])
    return dict(g=R.Gallery.build(gemb, glat, glon, _bins(glat, glon), n_cells=72), q=qemb, qlat=qlat, qlon=qlon,
                probs=probs, mixed=mixed)


def _acc(plat, plon, lat, lon, km):
    return float((haversine_km(plat, plon, lat, lon) <= km).mean())


def test_knn_k1_is_the_nearest_image_as_knn_baseline(world):
    """k=1 returns the location of the brute-force most cosine-similar gallery image, the one knn_baseline uses;
    catches a wrong similarity (no normalisation, L2 on raw rows) and locations misaligned by the sort by cell."""
    w = world
    nn = (_unit(w["q"]) @ _unit(w["gemb"]).T).argmax(axis=1)
    plat, plon = R.knn_locate(w["g"], w["q"], k=1)
    np.testing.assert_array_equal(plat, w["glat"][nn])
    np.testing.assert_array_equal(plon, w["glon"][nn])
    base = B.knn_baseline(w["gemb"], w["glat"], w["glon"], w["q"], w["qlat"], w["qlon"])
    assert base.mean_km == pytest.approx(haversine_km(plat, plon, w["qlat"], w["qlon"]).mean(), rel=1e-12)


def _outlier_gallery():
    """Nine neighbours on a 3 x 3 grid 11 km apart around (10, 10), one more similar neighbour at (-40, 100), 20
    dissimilar others."""
    r = np.random.default_rng(5)
    q = _unit(r.normal(size=(1, DIM)))[0]

    def at(sim):
        v = r.normal(size=DIM)
        v -= (v @ q) * q
        return sim * q + np.sqrt(1 - sim**2) * v / np.linalg.norm(v)

    sims = [0.99, *np.linspace(0.95, 0.90, 9), *np.full(20, 0.1)]
    grid = np.array([(a, b) for a in (-0.1, 0, 0.1) for b in (-0.1, 0, 0.1)])
    lat = np.r_[-40.0, 10 + grid[:, 0], r.uniform(-60, 60, 20)]
    lon = np.r_[100.0, 10 + grid[:, 1], r.uniform(-170, 170, 20)]
    return R.Gallery.build(np.stack([at(s) for s in sims]), lat, lon, np.zeros(30, np.int64)), q[None]


def test_density_mode_ignores_a_lone_lookalike():
    """With k=10 the kernel-density mode lands in the cluster of nine, not on the single most similar image far
    away; with k=1 it is that image. Catches taking the most similar neighbour instead of the density mode, and a
    kernel too narrow for its km (then every neighbour is alone and the most similar wins again)."""
    g, q = _outlier_gallery()
    plat, plon = R.knn_locate(g, q, k=10, kernel_km=25.0)
    assert haversine_km(plat, plon, 10.0, 10.0)[0] < 30
    plat, plon = R.knn_locate(g, q, k=1)
    assert (plat[0], plon[0]) == (-40.0, 100.0)
    plat, plon = R.hybrid_locate(g, q, np.ones((1, 1)), top_cells=1, k=10, kernel_km=25.0)
    assert haversine_km(plat, plon, 10.0, 10.0)[0] < 30


def test_hybrid_stays_in_its_top_cells_and_falls_back_when_they_are_empty(world):
    """Every prediction lies in one of the query's top cells when those hold gallery images; queries whose top
    cells are all empty get global kNN. Catches candidates taken from the wrong cells or a broken fallback."""
    w = world
    keep = w["glat"] < 60  # the top latitude band (cells 60..71) holds no gallery image
    g = R.Gallery.build(w["gemb"][keep], w["glat"][keep], w["glon"][keep], _bins(w["glat"], w["glon"])[keep], 72)
    probs = np.random.default_rng(3).dirichlet(np.full(72, 0.3), len(w["q"]))
    probs[:20, 60:63] += 10.0  # these queries' three top cells are empty
    plat, plon = R.hybrid_locate(g, w["q"], probs, top_cells=3, k=10, kernel_km=300.0)
    top = np.argsort(-probs, axis=1)[:, :3]
    has = np.isin(top, g.cell).any(axis=1)
    assert has[20:].mean() > 0.9 and not has[:20].any()
    assert all(c in t for c, t in zip(_bins(plat[has], plon[has]), top[has], strict=True))
    flat, flon = R.knn_locate(g, w["q"][:20], k=10, kernel_km=300.0)
    np.testing.assert_array_equal(plat[:20], flat)
    np.testing.assert_array_equal(plon[:20], flon)


def test_hybrid_resolves_lookalikes_that_confuse_retrieval(lookalikes):
    """Where two regions look alike, weighting neighbours by their cell's probability puts the prediction in the
    right region: the hybrid (top 2 cells: both regions) beats plain kNN. Catches dropping the cell weight."""
    d = lookalikes
    args = dict(k=10, kernel_km=100.0)
    klat, klon = R.knn_locate(d["g"], d["q"], **args)
    hlat, hlon = R.hybrid_locate(d["g"], d["q"], d["probs"], top_cells=2, **args)
    knn, hybrid = _acc(klat, klon, d["qlat"], d["qlon"], 750), _acc(hlat, hlon, d["qlat"], d["qlon"], 750)
    assert knn < 0.75, "the synthetic regions should confuse retrieval alone"
    assert hybrid >= knn and hybrid > 0.95


def test_all_cells_with_uniform_probabilities_is_plain_knn(world):
    """With every cell searched and equal cell probabilities the hybrid is kNN with the same k and kernel;
    catches hybrid weights or neighbour selection that differ from knn_locate's."""
    w = world
    for k, kernel in ((1, None), (10, 300.0)):
        hlat, hlon = R.hybrid_locate(w["g"], w["q"], np.full((len(w["q"]), 72), 1 / 72), top_cells=72, k=k,
                                     kernel_km=kernel)
        klat, klon = R.knn_locate(w["g"], w["q"], k=k, kernel_km=kernel)
        np.testing.assert_array_equal(hlat, klat)
        np.testing.assert_array_equal(hlon, klon)


@pytest.mark.parametrize("change, message", [
    (dict(emb=np.ones(5)), "gallery embeddings: expected a non-empty 2-D array"),
    (dict(lat=np.zeros(4)), r"gallery latitudes: expected shape \(5,\)"),
    (dict(emb=np.where(np.arange(5)[:, None] == 2, np.nan, 1.0) * np.ones((5, 3))), "NaN or inf at rows: 2"),
    (dict(emb=np.zeros((5, 3))), "all-zero rows"),
    (dict(lat=np.array([0, 0, 95.0, 0, 0])), r"invalid gallery coordinates \(NaN, \|lat\|>90.* at rows: 2"),
    (dict(cell=np.array([0, 1, 2, 3, 9])), r"labels outside -1\.\.4 at rows: 4"),
    (dict(cell=np.zeros(5)), "expected integer class labels"),
])
def test_bad_gallery_is_an_input_error_naming_the_problem(change, message):
    """Wrong shapes, NaN or zero embeddings, latitude 95 and out-of-range cells are refused with a message that
    names the problem (and the row); catches validation that is missing or raises something unhelpful."""
    args = dict(emb=np.random.default_rng(0).normal(size=(5, 3)), lat=np.zeros(5), lon=np.zeros(5),
                cell=np.arange(5), n_cells=5) | change
    with pytest.raises(InputError, match=message):
        R.Gallery.build(**args)


def test_bad_queries_and_options_are_input_errors(world):
    """Queries of the wrong width or with NaN, cell_probs whose columns are not the gallery's cells, and
    impossible k, kernel or top_cells values are refused with a message naming them."""
    g, q = world["g"], world["q"][:4]
    probs = np.full((4, 72), 1 / 72)
    cases = [
        (lambda: R.knn_locate(g, q[:, :10]), "query embeddings: 10 dims per row, the gallery's embeddings have 64"),
        (lambda: R.knn_locate(g, np.where(np.arange(4)[:, None] == 1, np.nan, q)), "NaN or inf at rows: 1"),
        (lambda: R.hybrid_locate(g, q, probs[:, :70]), "cell_probs: 70 columns, the gallery's partitioning has 72"),
        (lambda: R.hybrid_locate(g, q, probs[:3]), r"cell_probs: expected shape \(4, 72\)"),
        (lambda: R.hybrid_locate(g, q, -probs), "finite and >= 0"),
        (lambda: R.knn_locate(g, q, k=5), "need kernel_km"),
        (lambda: R.knn_locate(g, q, k=0), "k must be a positive integer"),
        (lambda: R.hybrid_locate(g, q, probs, kernel_km=-1.0), "kernel_km must be a positive"),
        (lambda: R.hybrid_locate(g, q, probs, top_cells=0), "top_cells must be a positive integer"),
        (lambda: R.choose(g, q, probs, np.zeros(4), np.zeros(4), {"kk": [1]}), r"unknown keys \['kk'\]"),
    ]
    for call, message in cases:
        with pytest.raises(InputError, match=message):
            call()


def test_npz_round_trip_keeps_the_predictions(world, tmp_path):
    """A gallery written as float16 and read back picks the same neighbours and locations; the file is replaced
    atomically (no temporary left, a failed write keeps the old file), and ``as_float16`` is exactly what is read
    back (the protocol's record of the stored gallery). Catches lost fields or cell order, and an ``as_float16``
    that is not what a bundle searches."""
    w, q = world, world["q"]
    g = R.Gallery.build(w["gemb"], w["glat"], w["glon"], _bins(w["glat"], w["glon"]), n_cells=80)  # 8 empty cells
    path = g.to_npz(tmp_path / "gallery.npz")
    back = R.Gallery.from_npz(path)
    with np.load(path) as z:
        assert z["emb"].dtype == np.float16
    assert back.n_cells == 80 and len(back) == len(g)
    np.testing.assert_array_equal(back.emb, g.as_float16().emb)
    np.testing.assert_array_equal(back.search(q, 10)[1], g.search(q, 10)[1])
    probs = np.random.default_rng(2).dirichlet(np.ones(80), len(q))
    for locate in (lambda x: R.knn_locate(x, q, k=10, kernel_km=300.0),
                   lambda x: R.hybrid_locate(x, q, probs, top_cells=5, k=10, kernel_km=300.0)):
        np.testing.assert_array_equal(np.stack(locate(back)), np.stack(locate(g)))
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(np, "savez", broken)
        with pytest.raises(OSError, match="disk full"):
            back.to_npz(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["gallery.npz"]


def test_choose_picks_the_best_validation_setting(lookalikes):
    """With a classifier wrong on 30% of the images, the top cell alone is right on ~70%, the nearest image of the
    top two on ~50%, the cell-weighted density of ten on more: that setting is chosen, and each grid point's
    accuracy is what hybrid_locate itself gives (the search for the largest k serves the smaller ones)."""
    d = lookalikes
    out = R.choose(d["g"], d["q"], d["mixed"], d["qlat"], d["qlon"],
                   {"top_cells": [2, 1], "k": [10, 1], "kernel_km": [100.0]}, km=750.0)
    assert (out["top_cells"], out["k"], out["kernel_km"]) == (2, 10, 100.0)
    assert len(out["grid"]) == 4 and out["km"] == 750.0
    others = [p["accuracy"] for p in out["grid"] if (p["top_cells"], p["k"]) != (2, 10)]
    assert out["accuracy"] > max(others) + 0.05
    for p in out["grid"]:
        plat, plon = R.hybrid_locate(d["g"], d["q"], d["mixed"], **{k: p[k] for k in R.HYBRID_KEYS})
        assert p["accuracy"] == _acc(plat, plon, d["qlat"], d["qlon"], 750.0)


@pytest.mark.parametrize("grid, chosen", [
    ({"top_cells": [5, 2], "k": [10, 3], "kernel_km": [50.0, 25.0]}, (2, 3, 25.0)),
    ([{"top_cells": 1, "k": 10, "kernel_km": 25.0}, {"top_cells": 5, "k": 3, "kernel_km": 50.0}], (5, 3, 50.0)),
    ([{"top_cells": 5, "k": 3, "kernel_km": 25.0}, {"top_cells": 2, "k": 3, "kernel_km": 50.0}], (2, 3, 50.0)),
    ([{"top_cells": 2, "k": 3, "kernel_km": 50.0}, {"top_cells": 2, "k": 3, "kernel_km": 25.0}], (2, 3, 25.0)),
])
def test_choose_breaks_ties_by_k_then_top_cells_then_kernel(lookalikes, grid, chosen):
    """Within 20,100 km every setting is right on every image, so the tie rule alone decides: the smaller k, then
    fewer top cells, then the smaller kernel (whatever the grid's order); catches a different or missing order."""
    d = lookalikes
    out = R.choose(d["g"], d["q"], d["probs"], d["qlat"], d["qlon"], grid, km=20_100.0)
    assert all(p["accuracy"] == 1.0 for p in out["grid"])
    assert (out["top_cells"], out["k"], out["kernel_km"]) == chosen
