"""The study's protocol in one place: distance thresholds, the primary endpoint, the spatial blocks, the
bootstrap, the family-wise level, and the one rule that turns an interval into a word.

Every comparison, table, plot and sentence of the compendium and the CLI reads these constants and calls
:func:`direction` / :func:`interval_word`; nothing else retypes them (book/method.md gives the reasons).
"""

from __future__ import annotations

import math
import numbers

THRESHOLDS_KM: tuple[int, ...] = (1, 25, 200, 750, 2500)
"""Accuracy is the share of images within each of these great-circle distances (GeoEstimation's levels)."""
PRIMARY_KM = 750
"""The primary endpoint: accuracy within 750 km, the smallest threshold at which the single-task model is off the
floor on the pixel-disjoint benchmark's validation split (:data:`FLOOR_POINTS`; book/method.md gives the rule and
the numbers: 200 km was declared first and floored)."""
FLOOR_POINTS = 2.0
"""Accuracy (points) below which a model is at the floor of an endpoint: the primary endpoint is the smallest
threshold where the single-task model's validation accuracy is at least 5 times this, and a verdict row whose two
arms both score below it says :data:`NO_INFORMATION`, never "equivalent"."""
BLOCK_DEG = 5.0
"""Spatial blocks of this many degrees (latitude and longitude) are the bootstrap's resampling unit."""
N_BOOT = 2000
"""Bootstrap replicates of every comparison."""
N_BOOT_SUMMARY = 1000
"""Bootstrap replicates of a run's own accuracy interval (its seed summary)."""
N_BOOT_VERDICT = 10_000
"""Bootstrap replicates of a verdict row: enough that Holm's smallest level in a family of 8 (0.05 / 8, a
two-sided tail of 0.3%) still has about 30 replicates beyond it."""
LEVEL = 0.95
"""Confidence level of every interval."""
ALPHA = 0.05
"""Family-wise error rate of a verdict: Holm-adjusted p below this, and the interval excluding 0."""
POWER = 0.8
"""The power at which a row's minimum detectable effect (``mde``) is stated."""
EQUIV_MARGIN = 1.0
"""Equivalence margin (percentage points at the primary endpoint): a difference whose 95% interval lies inside
±EQUIV_MARGIN is "equivalent" (no effect a reader would care about), declared before the numbers."""

DIRECTION_WORDS = ("better", "worse", "not resolved")
"""What a difference A − B says of A: its interval above 0, below 0, or containing 0."""
VERDICT_WORDS = ("helps", "hurts", "not resolved")
"""What a verdict row says of b against a: the words of :data:`DIRECTION_WORDS` in a verdict; a row whose
interval lies inside the equivalence margin says "equivalent", one whose interval has no width "no information"
(:func:`verdict_word`)."""
NO_INFORMATION = "no information"
"""The word of a row whose interval has zero width: both arms scored the same on every resample (e.g. both hit
the same very few images), so the data say nothing about the difference; never read as "equivalent"."""


def direction(lo: float, hi: float) -> int:
    """+1 when the interval [lo, hi] lies above 0, -1 below 0, 0 when it contains 0 (or is not a number).

    >>> direction(0.5, 2.0), direction(-3.0, -0.1), direction(-1.0, 1.0), direction(0.0, 1.0)
    (1, -1, 0, 0)
    """
    if math.isnan(lo) or math.isnan(hi):
        return 0
    return 1 if lo > 0 else -1 if hi < 0 else 0


def interval_word(lo: float, hi: float, p_adjusted: float | None = None, words: tuple[str, str, str] = DIRECTION_WORDS,
                  alpha: float = ALPHA) -> str:
    """The word for an interval: ``words[0]`` above 0, ``words[1]`` below 0, else ``words[2]``; with
    ``p_adjusted`` (Holm) an interval that excludes 0 also needs ``p_adjusted < alpha``.

    >>> interval_word(0.2, 1.0), interval_word(0.2, 1.0, p_adjusted=0.06), interval_word(-2, -1, words=VERDICT_WORDS)
    ('better', 'not resolved', 'hurts')
    """
    d = direction(lo, hi)
    if d and p_adjusted is not None and not p_adjusted < alpha:
        d = 0
    return words[0] if d > 0 else words[1] if d < 0 else words[2]


def verdict_word(lo: float, hi: float, p_adjusted: float, margin: float = EQUIV_MARGIN, alpha: float = ALPHA,
                 arms: tuple[float, float] | None = None) -> str:
    """A verdict row's word: ``helps`` / ``hurts`` (interval beside 0 and Holm p < alpha), :data:`NO_INFORMATION`
    (otherwise, a zero-width interval: no resample moved the difference, as when both arms hit the same few
    images; or both ``arms``' accuracies, points, below :data:`FLOOR_POINTS`), ``equivalent`` (the 95% interval
    inside ±margin), else ``not resolved``.

    >>> verdict_word(0.5, 2.0, 0.01), verdict_word(-0.8, 0.6, 0.5), verdict_word(-3.0, 2.0, 0.9)
    ('helps', 'equivalent', 'not resolved')
    >>> verdict_word(0.0, 0.0, 1.0), verdict_word(100.0, 100.0, 0.0), verdict_word(-0.3, 0.2, 1.0, arms=(1.2, 1.1))
    ('no information', 'helps', 'no information')
    """
    word = interval_word(lo, hi, p_adjusted, VERDICT_WORDS, alpha)
    floored = arms is not None and max(arms) < FLOOR_POINTS
    if word == VERDICT_WORDS[2] and (lo == hi or floored):
        return NO_INFORMATION
    if word == VERDICT_WORDS[2] and -margin <= lo and hi <= margin:
        return "equivalent"
    return word


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """A count with its noun in agreement (``nouns``: the plural where it is not ``noun + "s"``), so the
    generated text never says "1 seeds".

    >>> plural(1, "seed"), plural(2, "seed"), plural(0, "fold"), plural(1, "image", "images")
    ('1 seed', '2 seeds', '0 folds', '1 image')
    """
    return f"{n} {noun if n == 1 else nouns or noun + 's'}"


def escape_markdown(text: str) -> str:
    r"""``text`` to be placed in markdown as it reads: ``*`` escaped, so "f*" beside ``**bold**`` is not taken
    for emphasis (the generated markdown writes ``f\*``, which renders as f*).

    >>> escape_markdown("f* against the fine head")
    'f\\* against the fine head'
    """
    return text.replace("*", r"\*")


def dash(value: float | None, spec: str = "") -> str:
    """``value`` formatted with ``spec``, or an em dash where there is none (None or NaN): generated tables and
    sentences never show "nan" or "None" as a number.

    >>> dash(0.1234, ".2f"), dash(float("nan"), ".2f"), dash(None)
    ('0.12', '—', '—')
    """
    if value is None or (isinstance(value, numbers.Real) and math.isnan(value)):
        return "—"
    return format(value, spec)


def minimum_detectable_effect(se: float, alpha: float = ALPHA, power: float = POWER, df: int | None = None) -> float:
    """The smallest true difference a two-sided test at level ``alpha`` detects with probability ``power``, for
    an estimate with standard error ``se``: (z_{1-alpha/2} + z_power) · se, or with t quantiles of ``df`` degrees
    of freedom when the interval is a t over folds (``df`` = folds − 1).

    >>> round(minimum_detectable_effect(1.0), 3), round(minimum_detectable_effect(1.0, df=5), 3)
    (2.802, 3.49)
    """
    if df is not None:
        from scipy.stats import t

        return float((t.ppf(1 - alpha / 2, df) + t.ppf(power, df)) * se)
    from statistics import NormalDist

    z = NormalDist().inv_cdf
    return (z(1 - alpha / 2) + z(power)) * se


def planned_se(var_seed: float, var_seed_block: float, var_block: float, seeds: int, folds: int) -> float:
    """Projected standard error of a paired difference pooled over ``folds`` cross-validation folds with ``seeds``
    seeds each, from the variance components of one seed's difference on one test split (a global seed effect,
    a seed × block interaction, between blocks): each fold's test split is taken to behave like the pilot's,
    seeds average the first two within a fold and folds average all three.

    >>> round(planned_se(2.24, 2.88, 1.28, seeds=3, folds=1), 2)
    1.73
    """
    return float(((var_seed + var_seed_block) / seeds + var_block) / folds) ** 0.5


def variance_components(diff) -> dict[str, float]:
    """Method-of-moments variance components of per-run differences (a folds × seeds array, points): ``within``,
    the seed-to-seed variance inside a fold (a global seed effect plus seed × block), and ``between``, the
    variance of a fold's own difference (its test regions), floored at 0.

    >>> variance_components([[1.0, 3.0], [5.0, 7.0]])
    {'within': 2.0, 'between': 7.0}
    """
    import numpy as np

    d = np.asarray(diff, dtype=float)
    if d.ndim != 2 or d.shape[0] < 2 or d.shape[1] < 2 or not np.isfinite(d).all():
        raise ValueError(f"need a finite folds × seeds array with at least 2 of each, got shape {d.shape}")
    within = float(d.var(axis=1, ddof=1).mean())
    return {"within": within, "between": max(0.0, float(d.mean(axis=1).var(ddof=1)) - within / d.shape[1])}


def projected_se(se: float, within: float, between: float, seeds: int, folds: int, to_seeds: int,
                 to_folds: int) -> float:
    """A standard error measured with ``seeds`` × ``folds`` runs per arm, projected to ``to_seeds`` ×
    ``to_folds``: seeds average the within-fold part, folds average both (:func:`variance_components`).

    >>> round(projected_se(1.0, within=3.0, between=0.0, seeds=3, folds=2, to_seeds=3, to_folds=8), 2)
    0.5
    """
    now = within / seeds + between
    ratio = (within / to_seeds + between) / now if now > 0 else 1.0
    return float(se * math.sqrt(ratio * folds / to_folds))
