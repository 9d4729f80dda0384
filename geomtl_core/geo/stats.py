"""The one statistics module: spatial-block bootstrap CIs, paired differences, seeds, Holm.

:func:`paired_comparison` is the one paired comparison of the project (CLI, book, verdict, the paper's claims
and the plots all call it): **A − B**, the first argument minus the second, with one seed or several.

Images close together are not independent (a city contributes many test images), so every interval
resamples whole **spatial blocks** of the true locations: cells of ``block_deg`` degrees, numbered
``floor((lat + 90) / d)`` by ``floor((lon + 180) / d)``. Paired comparisons resample the same blocks for
both methods, so the pairing of images is kept. Across training seeds, :func:`hierarchical_bootstrap`
resamples seeds, then blocks, carrying both sources of variance. A replicate is computed from
per-block sums (one matrix product per chunk of replicates), never by materialising resampled images.
"""

from __future__ import annotations

from dataclasses import dataclass

from geomtl_core.errors import InputError
from geomtl_core.geo.protocol import BLOCK_DEG, LEVEL, N_BOOT

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["BLOCK_DEG", "LEVEL", "N_BOOT", "PairedComparison", "block_bootstrap", "bootstrap_p", "effective_blocks",
           "hierarchical_bootstrap", "hits", "holm", "paired_comparison", "percentile_ci", "spatial_blocks"]


def spatial_blocks(lat: ArrayLike, lon: ArrayLike, block_deg: float = BLOCK_DEG,
                   groups: ArrayLike | None = None) -> np.ndarray:
    """Dense block index (0..B-1) of each location in a grid of ``block_deg`` degrees; with ``groups`` (e.g. the
    cross-validation fold of each test image) blocks nest in groups: one block per (group, grid square).

    >>> spatial_blocks([0.0, 1.0, 6.0, -89.0], [0.0, 4.9, 0.0, 179.9]).tolist()
    [1, 1, 2, 0]
    >>> spatial_blocks([0.0, 1.0, 6.0, -89.0], [0.0, 4.9, 0.0, 179.9], groups=[0, 1, 0, 0]).tolist()
    [1, 3, 2, 0]
    """
    if not block_deg > 0:
        raise InputError(f"block size must be positive degrees, got {block_deg}")
    lat_a, lon_a = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    rows = np.floor((np.clip(lat_a, -90, 90) + 90) / block_deg).astype(np.int64)
    cols = np.floor((np.mod(lon_a + 180, 360)) / block_deg).astype(np.int64)
    rows = np.minimum(rows, int(np.ceil(180 / block_deg)) - 1)  # lat = 90 joins the top row
    square = rows * 100_000 + cols
    if groups is not None:
        g = np.asarray(groups, dtype=np.int64)
        if g.shape != square.shape:
            raise InputError(f"groups must give one group per location, got {g.shape} for {square.shape}")
        square = g * 100_000_000 + square
    return np.unique(square, return_inverse=True)[1].astype(np.int64).ravel()


def hits(errors_km: ArrayLike, thresholds_km: ArrayLike) -> np.ndarray:
    """(n, T) 0/1 matrix: image within each threshold (``d <= t``)."""
    err = np.asarray(errors_km, dtype=np.float64)
    return (err[:, None] <= np.asarray(thresholds_km, dtype=np.float64)[None, :]).astype(np.float64)


def _block_sums(values: np.ndarray, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n_blocks = int(blocks.max()) + 1
    sums = np.zeros((n_blocks, *values.shape[1:]))
    np.add.at(sums, blocks, values)
    return sums, np.bincount(blocks, minlength=n_blocks).astype(np.float64)


def _block_counts(rng: np.random.Generator, n_blocks: int, n_boot: int) -> np.ndarray:
    """(n_boot, B) how often each block is drawn when B blocks are drawn with replacement."""
    return rng.multinomial(n_blocks, np.full(n_blocks, 1.0 / n_blocks), size=n_boot).astype(np.float64)


def block_bootstrap(
    values: ArrayLike, blocks: ArrayLike | None = None, n_boot: int = N_BOOT, seed: int = 0
) -> np.ndarray:
    """(n_boot, K) bootstrap replicates of the column means of ``values`` (n, K), resampling whole blocks
    (``blocks=None``: every image its own block, the i.i.d. bootstrap)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[:, None] if v.ndim == 1 else v
    if len(v) == 0:
        raise InputError("cannot bootstrap an empty set of images")
    b = np.arange(len(v)) if blocks is None else np.asarray(blocks, dtype=np.int64)
    sums, sizes = _block_sums(v, b)
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, v.shape[1]))
    chunk = max(1, 4_000_000 // len(sizes))
    for start in range(0, n_boot, chunk):
        c = _block_counts(rng, len(sizes), min(chunk, n_boot - start))
        out[start : start + len(c)] = (c @ sums) / (c @ sizes)[:, None]
    return out


def hierarchical_bootstrap(
    values: ArrayLike, blocks: ArrayLike, n_boot: int = N_BOOT, seed: int = 0
) -> np.ndarray:
    """(n_boot, K) replicates of the seed-averaged means of ``values`` (S seeds, n images, K), resampling
    seeds with replacement, then blocks of images (the same blocks for every seed of a replicate)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[..., None] if v.ndim == 2 else v
    n_seeds = v.shape[0]
    b = np.asarray(blocks, dtype=np.int64)
    per_seed = [_block_sums(v[s], b) for s in range(n_seeds)]
    sums = np.stack([p[0] for p in per_seed])  # (S, B, K)
    sizes = per_seed[0][1]
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, v.shape[2]))
    for r in range(n_boot):
        w = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds)) / n_seeds  # seed weights
        c = _block_counts(rng, len(sizes), 1)[0]
        out[r] = np.einsum("s,b,sbk->k", w, c, sums) / (c @ sizes)
    return out


def fold_t_interval(diff: np.ndarray, folds: np.ndarray, level: float = LEVEL
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inference at the level of the design's unit, the cross-validation fold: per fold the seed-averaged paired
    difference (mean over its seeds and images), then a t interval over the F fold means with F − 1 degrees of
    freedom. ``diff``: (S, n, T) per-seed, per-image differences; ``folds``: (n,) the fold of each image. Returns
    (estimate, ci (T, 2), two-sided p, standard error), each per column T. A shift shared by a whole fold (its
    training set, a choice meeting it) is a unit's own error here, which a bootstrap of blocks pooled across
    folds barely resamples (book/method.md, "Inference").

    >>> d = np.array([[[1.0], [1.0], [3.0], [3.0], [2.0], [2.0]]])  # one seed, three folds of two images
    >>> est, ci, p, se = fold_t_interval(d, np.array([0, 0, 1, 1, 2, 2]))
    >>> float(est[0]), round(float(se[0]), 3), [round(float(x), 2) for x in ci[0]]
    (2.0, 0.577, [-0.48, 4.48])
    """
    from scipy.stats import t as student_t

    f = np.unique(folds, return_inverse=True)[1].ravel()
    n_folds = int(f.max()) + 1
    if n_folds < 2:
        raise InputError("a fold-level interval needs at least two folds")
    per_image = diff.mean(axis=0)  # (n, T): seed-averaged
    sums, sizes = _block_sums(per_image, f)
    means = sums / sizes[:, None]  # (F, T)
    est = means.mean(axis=0)
    se = means.std(axis=0, ddof=1) / np.sqrt(n_folds)
    df = n_folds - 1
    half = student_t.ppf(0.5 + level / 2, df) * se
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.where(se > 0, np.abs(est) / np.where(se > 0, se, 1.0), np.where(est == 0, 0.0, np.inf))
    p = np.minimum(1.0, 2.0 * student_t.sf(stat, df))
    return est, np.stack([est - half, est + half], axis=1), p, se


def percentile_ci(replicates: np.ndarray, level: float = LEVEL) -> np.ndarray:
    """(K, 2) percentile interval of each column of ``replicates``."""
    alpha = (1.0 - level) / 2.0
    return np.quantile(replicates, [alpha, 1.0 - alpha], axis=0).T


def bootstrap_p(replicates: np.ndarray) -> np.ndarray:
    """Two-sided p-value of "difference = 0" per column: twice the smaller tail share beyond 0, at most 1."""
    below = (replicates <= 0).mean(axis=0)
    above = (replicates >= 0).mean(axis=0)
    return np.minimum(1.0, 2.0 * np.minimum(below, above))


def holm(p: ArrayLike) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values over one family of comparisons (same order as ``p``).

    >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(1.0, adj)
    return out


FOLD_T = "fold t"
"""The interval of a comparison pooled over cross-validation folds: t over fold means, F − 1 degrees of freedom."""


@dataclass(frozen=True)
class PairedComparison:
    """Accuracy of A and B at each threshold (mean over seeds and images), the paired difference A − B with its
    bootstrap CI (seeds, then spatial blocks), two-sided p, and Holm-adjusted p over the thresholds."""

    thresholds_km: list[int]
    n: int
    n_blocks: int
    block_deg: float
    acc_a: np.ndarray
    acc_b: np.ndarray
    diff: np.ndarray
    ci: np.ndarray  # (T, 2)
    p: np.ndarray
    p_holm: np.ndarray
    n_seeds: int = 1
    se: np.ndarray | None = None  # (T,) standard error of the difference (fold t, or the bootstrap's sd)
    n_blocks_eff: float = float("nan")  # Kish's effective number of blocks
    interval: str = "block bootstrap"  # how ci and p were made: "fold t" (F − 1 df) or "block bootstrap"
    n_folds: int = 1
    ci_boot: np.ndarray | None = None  # (T, 2) the block bootstrap's interval, kept beside a fold t interval

    def to_json_dict(self) -> dict:
        """The JSON object of ``geomtl compare --json`` (fractions, not percent)."""
        return {"n": self.n, "n_blocks": self.n_blocks, "block_deg": self.block_deg, "n_seeds": self.n_seeds,
                "thresholds_km": {
            str(t): {"acc_a": float(self.acc_a[k]), "acc_b": float(self.acc_b[k]), "diff": float(self.diff[k]),
                     "ci95": [float(self.ci[k, 0]), float(self.ci[k, 1])], "p": float(self.p[k]),
                     "p_holm": float(self.p_holm[k])}
            for k, t in enumerate(self.thresholds_km)}}

    def to_table(self, name_a: str = "A", name_b: str = "B") -> str:
        """The text table of ``geomtl compare``."""
        lines = [f"{self.n} images in {self.n_blocks} blocks of {self.block_deg:g} deg; A = {name_a}, B = {name_b}",
                 f"{'threshold':>10} {'acc A':>7} {'acc B':>7} {'A - B':>7}  {'95% CI (block bootstrap)':>24}"
                 f" {'p':>6} {'p_holm':>6}"]
        for k, t in enumerate(self.thresholds_km):
            lo, hi = self.ci[k]
            lines.append(f"{t:>7} km {self.acc_a[k]:7.4f} {self.acc_b[k]:7.4f} {self.diff[k]:+7.4f}  "
                         f"{f'[{lo:+.4f}, {hi:+.4f}]':>24} {self.p[k]:6.3f} {self.p_holm[k]:6.3f}")
        return "\n".join(lines)

    def at(self, threshold_km: int) -> dict:
        """One threshold's numbers in percentage points: acc_a, acc_b, diff, ci_lo, ci_hi, p, p_holm, n_seeds,
        n_blocks."""
        k = self.thresholds_km.index(int(threshold_km))
        return {"acc_a": 100 * float(self.acc_a[k]), "acc_b": 100 * float(self.acc_b[k]),
                "diff": 100 * float(self.diff[k]), "ci_lo": 100 * float(self.ci[k, 0]),
                "ci_hi": 100 * float(self.ci[k, 1]), "p": float(self.p[k]), "p_holm": float(self.p_holm[k]),
                "se": 100 * float(self.se[k]) if self.se is not None else float("nan"),
                "n_seeds": self.n_seeds, "n_blocks": self.n_blocks, "n_blocks_eff": self.n_blocks_eff,
                "n_images": self.n, "interval": self.interval, "n_folds": self.n_folds,
                "df": self.n_folds - 1 if self.interval == FOLD_T else None,
                "ci_boot_lo": 100 * float(self.ci_boot[k, 0]) if self.ci_boot is not None else float("nan"),
                "ci_boot_hi": 100 * float(self.ci_boot[k, 1]) if self.ci_boot is not None else float("nan")}


def paired_comparison(
    errors_a: ArrayLike, errors_b: ArrayLike, lat: ArrayLike, lon: ArrayLike,
    thresholds_km: ArrayLike, *, block_deg: float = BLOCK_DEG, n_boot: int = N_BOOT, seed: int = 0,
    groups: ArrayLike | None = None,
) -> PairedComparison:
    """A − B accuracy at each threshold on the same images (true locations ``lat``/``lon``).

    ``errors_a``/``errors_b`` are (n,) for one model each, or (S, n) for S training seeds paired by seed
    (seed s of A against seed s of B; unequal seed counts are refused). The 95% CI resamples spatial blocks
    (one seed) or seeds, then blocks (:func:`hierarchical_bootstrap`); two-sided p; Holm over the thresholds.
    ``groups`` (the cross-validation fold of each image) nests the blocks in folds (:func:`spatial_blocks`); with
    two folds or more the primary interval, p and standard error are the fold-level t (:func:`fold_t_interval`),
    the accuracies and the difference means over folds, and the block bootstrap's interval stays as ``ci_boot``.
    """
    thr = [int(t) for t in np.asarray(thresholds_km).ravel()]
    ea, eb = np.asarray(errors_a, dtype=np.float64), np.asarray(errors_b, dtype=np.float64)
    ea, eb = (ea[None] if ea.ndim == 1 else ea), (eb[None] if eb.ndim == 1 else eb)
    if ea.shape[0] != eb.shape[0]:
        raise InputError(f"A and B must have the same number of seeds to be paired, got {ea.shape[0]} and "
                         f"{eb.shape[0]}; rerun the missing seeds")
    if ea.shape != eb.shape:
        raise InputError(f"A and B must score the same images, got {ea.shape[-1]} and {eb.shape[-1]}")
    ha = np.stack([hits(e, thr) for e in ea])  # (S, n, T)
    hb = np.stack([hits(e, thr) for e in eb])
    blocks = spatial_blocks(lat, lon, block_deg, groups)
    diff = ha - hb
    reps = hierarchical_bootstrap(diff, blocks, n_boot=n_boot, seed=seed) if len(diff) > 1 else \
        block_bootstrap(diff[0], blocks, n_boot=n_boot, seed=seed)
    common = (thr, ha.shape[1], int(blocks.max()) + 1, float(block_deg))
    if groups is not None and len(np.unique(groups)) >= 2:
        folds = np.asarray(groups)
        est, ci, p, se = fold_t_interval(diff, folds)
        acc_a, acc_b = (fold_t_interval(h, folds)[0] for h in (ha, hb))  # means over folds, as est
        return PairedComparison(*common, acc_a, acc_b, est, ci, p, holm(p), len(diff), se, effective_blocks(blocks),
                                FOLD_T, len(np.unique(folds)), percentile_ci(reps))
    p = bootstrap_p(reps)
    return PairedComparison(*common, ha.mean((0, 1)), hb.mean((0, 1)), diff.mean((0, 1)), percentile_ci(reps), p,
                            holm(p), len(diff), reps.std(axis=0, ddof=1), effective_blocks(blocks))


def effective_blocks(blocks: ArrayLike) -> float:
    """Kish's effective number of blocks, (sum n_b)^2 / sum n_b^2: how many equal blocks the test set is worth
    (a few large blocks make it far fewer than the count).

    >>> effective_blocks([0, 0, 1, 1]), round(effective_blocks([0, 0, 0, 1]), 2)
    (2.0, 1.6)
    """
    n = np.bincount(np.asarray(blocks, dtype=np.int64)).astype(np.float64)
    return float(n.sum() ** 2 / (n ** 2).sum())
