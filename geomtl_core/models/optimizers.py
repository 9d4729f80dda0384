"""The name ``geomtl>SGD``, kept so that bundles and checkpoints saved while geomtl had its own SGD still load.

geomtl once updated SGD's variables with fused torch calls of its own (issue #15). The book trains with AdamW,
so that update never sped up the book, and it read Keras internals (``_backend_update_step``,
``_get_variable_index``); it was removed (issue #22). Its arithmetic was Keras' own, bit for bit, so a run
saved with it resumes unchanged under this alias, which is ``keras.optimizers.SGD`` with another name.
"""

from __future__ import annotations

import keras

__all__ = ["SGD"]


@keras.saving.register_keras_serializable(package="geomtl")
class SGD(keras.optimizers.SGD):
    """``keras.optimizers.SGD`` under the registered name ``geomtl>SGD`` (loads what was saved with it)."""
