"""Control versions of the auxiliary (scene) labels, for telling "the scene task helps" apart from
"any extra head regularises" (``shuffled``) and from "extra location supervision helps" (``geographic``).

``shuffled`` permutes the labels among the images of each split (each split's class frequencies exactly;
no information about the image). ``geographic`` replaces them by a region code, a pure function of location:
the training images ordered along the S2 Hilbert curve are cut into consecutive runs with the training class
frequencies (so the same entropy, up to images sharing the location at a cut, which all go to the later
region), and every split uses the same cut points (val and test get whatever their regions give).
"""

from __future__ import annotations

from geomtl_core.errors import InputError
from geomtl_core.geo.s2 import cell_ids

import numpy as np
import pandas as pd

AUX_CONTROLS = ("none", "shuffled", "geographic")


def region_codes(train_lat: np.ndarray, train_lon: np.ndarray, train_labels: np.ndarray):
    """A function (lat, lon) -> region code whose training marginal equals ``train_labels``'.

    Regions are contiguous runs of the S2 Hilbert curve (so each is a compact part of the globe),
    as many as there are classes, sized by the classes' training frequencies.
    """
    classes, counts = np.unique(np.asarray(train_labels), return_counts=True)
    keys = np.sort(cell_ids(train_lat, train_lon))
    cuts = keys[np.cumsum(counts)[:-1]]  # first key of every region after the first

    def assign(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        return classes[np.searchsorted(cuts, cell_ids(lat, lon), side="right")]

    return assign


def control_labels(metas: dict[str, pd.DataFrame], tasks: list[str], control: str,
                   seed: int) -> dict[str, pd.DataFrame]:
    """Copies of the split tables (``{"train": df, "val": df, ...}``) with each task column replaced by
    its control; ``"none"`` returns them unchanged."""
    if control not in AUX_CONTROLS:
        raise InputError(f"data.aux_control must be one of {', '.join(AUX_CONTROLS)}, got {control!r}")
    if control == "none" or not tasks:
        return metas
    if "train" not in metas:
        raise InputError("auxiliary label controls need the training split")
    out = {k: v.copy() for k, v in metas.items()}
    for t, task in enumerate(tasks):
        for split, df in out.items():
            if task not in df:
                raise InputError(f"scene task {task!r} is not a column of the {split} metadata")
        if control == "shuffled":
            for k, (_, df) in enumerate(sorted(out.items())):
                rng = np.random.default_rng([seed, t, k])
                df[task] = rng.permutation(df[task].to_numpy())
        else:
            train = out["train"]
            assign = region_codes(train["lat"].to_numpy(), train["lon"].to_numpy(), train[task].to_numpy())
            for df in out.values():
                df[task] = assign(df["lat"].to_numpy(), df["lon"].to_numpy())
    return out
