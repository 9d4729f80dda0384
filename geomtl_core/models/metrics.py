"""The training metric of every task: top-1 accuracy over labelled samples, as a Keras metric and as the
batched count the lean train step uses."""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["MaskedAccuracy", "top1_hit_counts"]


@keras.saving.register_keras_serializable(package="geomtl")
class MaskedAccuracy(keras.metrics.Mean):
    """Top-1 accuracy over labelled samples only: a label < 0 (an evaluation image outside every cell of a
    partitioning) is ignored, never counted as some class."""

    def __init__(self, name: str = "acc", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        hit = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true), "float32")
        w = ops.cast(y_true >= 0, "float32")
        if sample_weight is not None:
            w = w * ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
        return super().update_state(hit, sample_weight=w)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


def top1_hit_counts(logits: list, target, labelled):
    """(tasks,) float: per task, how many labelled images have their label as top-1 class (MaskedAccuracy's
    count). ``logits``: torch tensors; ``target``/``labelled``: (tasks, batch) labels and label >= 0.

    The label's logit equal to the row maximum (``amax`` + ``gather``) costs a fifth of torch's CPU ``argmax``.
    The two differ only where the maximum is tied; float32 logits tie in practice only when a row is constant
    (a collapsed network, or zero features), and a batch with such a row takes ``argmax`` (first index wins)."""
    import torch

    top = torch.stack([x.amax(dim=-1) for x in logits])
    if bool((top == torch.stack([x.amin(dim=-1) for x in logits])).any()):
        hit = torch.stack([x.argmax(dim=-1) for x in logits]) == target
    else:
        index = target.clamp_min(0).unsqueeze(-1)
        hit = torch.stack([x.gather(1, index[i]).squeeze(1) for i, x in enumerate(logits)]) == top
    return (hit & labelled).sum(dim=1).float()
