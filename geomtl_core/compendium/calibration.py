"""Calibration of the verdict's procedure on real runs (book/method.md, "Calibration"): an A/A row, two
single-task arms that differ only in their seeds, and effects of known size injected into real fold × seed
predictions, each decided by the procedure the verdict uses on a cross-validated row (a t over fold means,
:func:`geomtl_core.geo.stats.fold_t_interval`). The A/A row must say "helps" or "hurts" no more often than the
level; the injected rows say how often an effect of 1, 1.5 and 3 points is detected: the design's power, stated
from its own runs rather than from a control with another mechanism."""

from __future__ import annotations

from pathlib import Path

from geomtl_core.compendium.design import Cell
from geomtl_core.compendium.results import fold_predictions, read_result
from geomtl_core.compendium.statistics import pooled_errors
from geomtl_core.geo.protocol import ALPHA, LEVEL, PRIMARY_KM
from geomtl_core.geo.stats import fold_t_interval

import numpy as np
import pandas as pd

INJECTED_POINTS = (0.0, 1.0, 1.5, 3.0)
"""Effects injected into one arm (points of accuracy at the primary endpoint); 0 is the A/A row."""
DRAWS = 400
"""Draws per injected effect: each a new seed rotation per fold and a new choice of the images it turns."""


def calibrate(hits: np.ndarray, folds: np.ndarray, effects: tuple[float, ...] = INJECTED_POINTS,
              draws: int = DRAWS, seed: int = 0, alpha: float = ALPHA) -> pd.DataFrame:
    """The procedure's verdicts on arms built from one arm's real runs. ``hits``: (S, n) hit (1) or miss (0) of
    S seeds on n test images at the primary endpoint; ``folds``: (n,) their fold. In every fold, arm A takes the
    run of one seed and arm B the run of another (drawn per fold and draw: two arms that differ only in their
    seeds, one seed each, since the runs have no spare seeds), then B's misses turn into hits at random so that
    the expected gain is the injected effect (points of all images); the interval is the fold t at level
    1 − ``alpha``. With one seed per arm the rows are noisier than the verdict's seed-averaged rows, so the
    detection rates are lower bounds of the rows' power. Returns one row per effect: draws, share decided
    "helps" (B above A) and "hurts", and the mean estimate (points)."""
    hits = np.asarray(hits, dtype=np.float64)
    n_seeds, n = hits.shape
    if n_seeds < 2:
        raise ValueError("an A/A comparison needs at least two seeds per fold (arms that differ only in their seeds)")
    f = np.unique(folds, return_inverse=True)[1].ravel()
    n_folds = int(f.max()) + 1
    cols = np.arange(n)
    rng = np.random.default_rng(seed)
    rows = []
    for effect in effects:
        helps = hurts = 0
        estimates = []
        for _ in range(draws):
            a_seed = rng.integers(0, n_seeds, n_folds)
            b_seed = (a_seed + rng.integers(1, n_seeds, n_folds)) % n_seeds  # another seed of the same fold
            a, b = hits[a_seed[f], cols], hits[b_seed[f], cols]
            misses = b == 0
            q = min(1.0, effect / 100 * n / max(1, misses.sum()))
            b = np.where(misses & (rng.random(n) < q), 1.0, b)
            est, ci, _, _ = fold_t_interval((b - a)[None, :, None], f, level=1 - alpha)
            helps += bool(ci[0, 0] > 0)
            hurts += bool(ci[0, 1] < 0)
            estimates.append(100 * float(est[0]))
        rows.append({"injected (points)": effect, "draws": draws, "helps %": round(100 * helps / draws, 1),
                     "hurts %": round(100 * hurts / draws, 1), "mean estimate (points)": round(np.mean(estimates), 2)})
    return pd.DataFrame(rows).set_index("injected (points)")


def calibration_table(scale: str, cell: Cell | None = None, root: Path | None = None, draws: int = DRAWS
                      ) -> pd.DataFrame:
    """:func:`calibrate` on a cross-validated single-task cell of the scale (its A/A cell, else the first
    single-task one of its ``cv`` cells, by default), from its test predictions over every fold and seed; an
    empty table (``attrs["reason"]``) where the cell has fewer than two seeds or folds."""
    from geomtl_core.compendium.design import aa_cell, cv_cells

    cell = cell or aa_cell(scale) or next((c for c in cv_cells(scale) if c.aux == "st"), None)
    if cell is None:
        return _empty(f"the {scale} scale cross-validates no single-task cell")
    files = fold_predictions(scale, cell.name, root)
    seeds = len(read_result(scale, cell.name, root).get("seeds", {}))
    if len(files) < 2 or seeds < 2:
        return _empty(f"{cell.name} runs {seeds} seed(s) on {len(files)} fold(s): an A/A row needs two seeds and a "
                      "fold-level interval two folds")
    per_seed = [list(fs) for fs in zip(*files.values(), strict=True)]
    errors, _, _, _, folds = pooled_errors(per_seed)
    table = calibrate(errors <= PRIMARY_KM, folds, draws=draws)
    table.attrs["cell"] = cell.name
    table.attrs["level"] = LEVEL
    return table


def _empty(reason: str) -> pd.DataFrame:
    table = pd.DataFrame(columns=["draws", "helps %", "hurts %", "mean estimate (points)"])
    table.attrs["reason"] = reason
    return table
