"""The multi-task loss: per-task sparse cross-entropies over labelled samples, combined with fixed weights or
learned log-variances (Kendall et al. 2018). Two implementations of the same operations: Keras ops (any
backend, any dtype policy, sample weights, label smoothing) and plain torch (the lean train step's case)."""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["lean_multitask_loss", "multitask_loss"]


def multitask_loss(task_names, y, y_pred, *, task_weights, log_vars=None, label_smoothing: float = 0.0,
                   sample_weight=None, training: bool = True, track=None):
    """Weighted sum of the per-task sparse cross-entropies (tasks absent from ``y`` are skipped;
    ``sample_weight`` weights images within each task; labels < 0 are masked out of their task).

    ``log_vars``: a (tasks,) variable of learned log-variances, loss ``sum_i exp(-s_i) L_i + s_i``; else
    ``sum_i w_i L_i`` with ``task_weights``. ``track(task, loss)`` receives each task's mean loss."""
    total = 0.0
    for k, task in enumerate(task_names):
        if task not in y:
            continue
        target = ops.cast(y[task], "int32")
        labelled = target >= 0  # -1: an image outside every cell of this partitioning, or without this label
        ce = keras.losses.sparse_categorical_crossentropy(ops.maximum(target, 0), y_pred[task], from_logits=True)
        if training and label_smoothing:  # (1 - e) * CE + e * CE against the uniform distribution
            logits = ops.cast(y_pred[task], "float32")
            uniform = ops.logsumexp(logits, axis=-1) - ops.mean(logits, axis=-1)
            ce = (1.0 - label_smoothing) * ce + label_smoothing * uniform
        if sample_weight is None and bool(ops.all(labelled)):
            ce = ops.mean(ce)
        else:  # weight 0 = unlabelled for this head, or an unreadable image's placeholder
            w = ops.cast(labelled, ce.dtype)
            if sample_weight is not None:
                w = w * ops.cast(ops.reshape(sample_weight, (-1,)), ce.dtype)
            ce = ops.sum(ce * w) / ops.maximum(ops.sum(w), 1.0)
        if track is not None:
            track(task, ce)
        if log_vars is not None:
            total = total + ops.exp(-log_vars[k]) * ce + log_vars[k]
        else:
            total = total + task_weights[task] * ce
    return total


def lean_multitask_loss(task_names, tasks, target, labelled, y_pred, *, task_weights, log_vars=None,
                        trackers=None):
    """:func:`multitask_loss` without sample weights or label smoothing: the same operations in plain torch
    (float32 torch tensors), and the per-task loss trackers (``trackers``: {task: keras Mean}) updated together
    in place. ``tasks``: the tasks present, in ``task_names`` order; ``target``/``labelled``:
    (len(tasks), batch) labels and label >= 0."""
    import torch

    tnn = torch.nn.functional
    log_vars = log_vars.value if log_vars is not None else None
    index = {t: k for k, t in enumerate(task_names)}
    everywhere = bool(labelled.all())
    total, tracked = 0.0, {}
    for i, task in enumerate(tasks):
        k = index[task]
        if everywhere or bool(labelled[i].all()):
            ce = tnn.cross_entropy(y_pred[task], target[i])  # the fused mean: ~0.1 ms less than none + mean
        else:
            ce = tnn.cross_entropy(y_pred[task], target[i].clamp_min(0), reduction="none")
            w = labelled[i].to(ce.dtype)
            ce = (ce * w).sum() / w.sum().clamp_min(1.0)
        tracked[task] = ce
        if log_vars is not None:
            total = total + torch.exp(-log_vars[k]) * ce + log_vars[k]
        else:
            weight = task_weights[task]
            total = total + (ce if weight == 1.0 else weight * ce)
    if tracked and trackers is not None:
        with torch.no_grad():
            mean_of = [trackers[t] for t in tracked]
            torch._foreach_add_([m.total._value for m in mean_of], [ce.detach() for ce in tracked.values()])
            torch._foreach_add_([m.count._value for m in mean_of], 1.0)
    return total
