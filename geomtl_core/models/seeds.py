"""Each layer's random initialisation from the run's seed and the layer's name, so that building a model never
draws from Python's shared ``random`` module (what Keras does for a layer without a seed). Another thread drawing
from it while a model is built (a Dask worker's own threads do) would otherwise change the weights."""

from __future__ import annotations

import zlib

import keras


def layer_seed(seed: int | None, name: str) -> int | None:
    """A layer's seed from the run's ``seed`` and its ``name`` (stable across processes and machines); None
    when ``seed`` is None (Keras then draws one, as before)."""
    return None if seed is None else zlib.crc32(f"{seed}/{name}".encode()) & 0x7FFFFFFF


def kernel_init(seed: int | None, name: str) -> keras.initializers.Initializer | str:
    """Keras' default kernel initialiser (Glorot uniform), seeded by :func:`layer_seed`."""
    s = layer_seed(seed, name)
    return "glorot_uniform" if s is None else keras.initializers.GlorotUniform(seed=s)
