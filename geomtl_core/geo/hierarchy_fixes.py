"""Remedies for a hierarchical prediction that follows its weakest head, fitted on validation and applied
unchanged on test, beside GeoEstimation's f* (the plain product of the heads' probabilities):

* ``hierarchy_T``: each head's probabilities tempered (``p ** (1/T)``, renormalised), T per head by
  validation negative log-likelihood;
* ``hierarchy_fine_sum``: the coarser levels' probabilities are the fine head's own, summed up to their cells
  (no coarse head at all; nothing fitted);
* ``hierarchy_weighted``: ``sum_k w_k log p_k`` with the fine head's weight 1 and the coarser heads' weights
  chosen on validation accuracy at the primary distance.
"""

from __future__ import annotations

import itertools

from geomtl_core.geo.geodesy import haversine_km
from geomtl_core.geo.partitioning import Hierarchy, Partitioning
from geomtl_core.geo.protocol import PRIMARY_KM

import numpy as np

TEMPERATURES = np.round(np.exp(np.linspace(np.log(0.25), np.log(4.0), 25)), 4)
LOG_WEIGHTS = (0.0, 0.25, 0.5, 1.0)


def temper(p: np.ndarray, t: float) -> np.ndarray:
    """``p ** (1/t)`` renormalised per row (the softmax of logits divided by ``t``)."""
    z = np.log(np.clip(p, 1e-300, None)) / t
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(p: np.ndarray, target: np.ndarray) -> float:
    """The temperature (from :data:`TEMPERATURES`) with the lowest mean NLL of the labelled rows' targets."""
    ok = target >= 0
    if not ok.any():
        return 1.0
    z = np.log(np.clip(p[ok], 1e-300, None))
    z -= z.max(axis=1, keepdims=True)  # the row's maximum of z / t is 0 at every t > 0: shifted once
    zt = z[np.arange(len(z)), target[ok]]
    # NLL of the tempered target, -z_target / t + log sum exp(z / t): one exp per temperature, nothing normalised
    nll = [np.mean(np.log(np.exp(z / t).sum(axis=1)) - zt / t) for t in TEMPERATURES]
    return float(TEMPERATURES[int(np.argmin(nll))])


def summed_up(p_fine: np.ndarray, hierarchy: Hierarchy, level: int, n_classes: int) -> np.ndarray:
    """Probabilities of the cells of partitioning ``level``: the fine head's probabilities summed over each
    cell's fine cells (fine cells without a parent at that level add to no cell)."""
    col = hierarchy.matrix[:, level]
    ok = col >= 0
    agg = np.zeros((n_classes, int(ok.sum())))
    agg[col[ok], np.arange(int(ok.sum()))] = 1.0
    return p_fine[:, ok] @ agg.T


def ancestor_logprobs(probs: list[np.ndarray], hierarchy: Hierarchy) -> list[np.ndarray]:
    """``log p_k[ancestor_k(c)]`` per level k for every fine cell c (-inf where the ancestor is missing)."""
    out = []
    for k, p in enumerate(probs):
        col = hierarchy.matrix[:, k]
        logp = np.log(np.clip(np.asarray(p, dtype=np.float32)[:, np.clip(col, 0, None)], 1e-30, None))
        logp[:, col < 0] = -np.inf
        out.append(logp)
    return out


def weighted_scores(probs: list[np.ndarray], hierarchy: Hierarchy, weights: list[float],
                    logps: list[np.ndarray] | None = None) -> np.ndarray:
    """``sum_k w_k log p_k[ancestor_k(c)]`` for every fine cell c (-inf where an ancestor is missing);
    ``logps``: :func:`ancestor_logprobs` computed once for many weightings."""
    logps = ancestor_logprobs(probs, hierarchy) if logps is None else logps
    out = np.zeros(logps[0].shape, dtype=np.float32)
    for logp, w in zip(logps, weights, strict=True):
        out += np.where(np.isfinite(logp), np.float32(w) * logp, -np.inf) if w else np.where(
            np.isfinite(logp), 0.0, -np.inf).astype(np.float32)
    return out


def _accuracy(score: np.ndarray, fine: Partitioning, lat: np.ndarray, lon: np.ndarray, km: float) -> float:
    plat, plon = fine.class_coordinates(score.argmax(axis=1))
    return float((haversine_km(lat, lon, plat, plon) <= km).mean())


def fit(probs: dict[str, np.ndarray], targets: dict[str, np.ndarray], parts: list[Partitioning],
        hierarchy: Hierarchy, lat: np.ndarray, lon: np.ndarray, km: float = PRIMARY_KM) -> dict:
    """Fit the remedies on one (validation) split: per-head temperatures and coarse-head log weights."""
    temps = {p.name: fit_temperature(probs[p.name], targets[p.name]) for p in parts}
    heads = [probs[p.name] for p in parts]
    logps = ancestor_logprobs(heads, hierarchy)
    best, best_acc = [1.0] * len(parts), -1.0
    for ws in itertools.product(LOG_WEIGHTS, repeat=len(parts) - 1):
        acc = _accuracy(weighted_scores(heads, hierarchy, [*ws, 1.0], logps), parts[-1], lat, lon, km)
        if acc > best_acc + 1e-12:
            best, best_acc = [*ws, 1.0], acc
    return {"temperatures": temps, "log_weights": dict(zip([p.name for p in parts], best, strict=True)),
            "fitted_on_km": km}


def scores(probs: dict[str, np.ndarray], parts: list[Partitioning], hierarchy: Hierarchy,
           remedies: dict) -> dict[str, np.ndarray]:
    """Score over fine cells (argmax = prediction) of every remedy, by method name."""
    heads = [probs[p.name] for p in parts]
    tempered = [temper(probs[p.name], remedies["temperatures"][p.name]) for p in parts]
    fine_sum = [summed_up(heads[-1], hierarchy, k, len(p)) for k, p in enumerate(parts[:-1])] + [heads[-1]]
    return {
        "hierarchy_T": hierarchy.scores(tempered),
        "hierarchy_fine_sum": hierarchy.scores(fine_sum),
        "hierarchy_weighted": weighted_scores(heads, hierarchy, [remedies["log_weights"][p.name] for p in parts]),
    }
