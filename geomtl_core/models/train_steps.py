"""GeoMTLModel's train steps besides Keras' own: the lean step (the fast path's: CPU, float32, the tested Keras,
see ``fast_path``) and Keras' step with one gradient all-reduce (data-parallel training off the fast path).

The lean step does what Keras' step does with less overhead: the model is called without ``Model.__call__``
(on a CPU there is no device to move the batch to), metric variables are updated in place, and the logs
dict (what callbacks and the progress bar see per batch) is rebuilt only on the first step after
``reset_metrics`` and every ``model.log_every`` steps; epoch logs are exact (Keras reads the metrics again
at the end of an epoch, and ``train_on_batch`` resets them every call).
"""

from __future__ import annotations

import contextlib

from geomtl_core.models.losses import lean_multitask_loss
from geomtl_core.models.metrics import MaskedAccuracy, top1_hit_counts

import keras
from keras import ops

__all__ = ["keras_distributed_step", "lean_applies", "lean_train_step", "one_thread", "plain_set", "track"]


@contextlib.contextmanager
def one_thread():
    """Run the per-step metric bookkeeping (a few reductions over (batch, classes) logits) on one CPU thread:
    waking torch's second OpenMP thread for each of them costs ~5x the reduction itself (measured: amax of
    256 x 677 logits 55 us on two threads, 11 us on one; switching costs ~0.2 us). The thread count is restored
    on exit, errors included; a thread that first uses torch inside the window would keep one thread."""
    import torch

    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def plain_set(obj, **attrs) -> None:
    """Set bookkeeping attributes without Keras/torch tracking (and its cost, and its built-layer lock)."""
    for k, v in attrs.items():
        object.__setattr__(obj, k, v)


def track(model, tracker, value) -> None:
    """``tracker.update_state(value)`` for a scalar; inside the lean step a direct in-place add."""
    if not getattr(model, "_lean_active", False):
        tracker.update_state(value)
        return
    import torch

    with torch.no_grad():
        tracker.total._value.add_(value.detach())
        tracker.count._value.add_(1.0)


def lean_applies(model) -> bool:
    """The lean step runs: the model was built where the fast path applies (``model.fast_path``), asks for it
    (``lean_train_step``), is compiled, float32 and without loss scaling, its compiled metrics built."""
    if not getattr(model, "fast_path", False) or not model.lean_train_step or model.optimizer is None:
        return False
    if keras.backend.backend() != "torch":
        return False
    if model.dtype_policy.name != "float32" or isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer):
        return False  # mixed precision: Keras' path (loss scaling, casts)
    return model._compile_metrics is None or model._compile_metrics.built


def fast_accuracies(model):
    """{task: MaskedAccuracy} when the compiled metrics are exactly ``compile_model``'s, else None."""
    cm = model._compile_metrics
    key = id(cm)
    if getattr(model, "_fast_acc_key", None) != key:
        ids = dict(getattr(model, "_masked_accuracy_ids", None) or {})
        flat = [m for ml in (cm._flat_metrics or []) if ml for m in ml.metrics] if cm is not None else []
        weighted = [m for ml in (getattr(cm, "_flat_weighted_metrics", None) or []) if ml for m in ml.metrics]
        by_id = {id(m): m for m in flat}
        ok = (cm is not None and not weighted and len(flat) == len(ids) and set(by_id) == set(ids.values())
              and all(type(m) is MaskedAccuracy for m in flat))
        plain_set(model, _fast_acc={t: by_id[i] for t, i in ids.items()} if ok else None, _fast_acc_key=key)
    return model._fast_acc


def lean_train_step(model, data, standard_loss: bool = True):
    """One optimisation step of ``model`` (a GeoMTLModel where :func:`lean_applies`), with one gradient
    all-reduce across processes when training data-parallel. ``standard_loss``: the model's ``compute_loss``
    is GeoMTLModel's own (so its torch twin may replace it)."""
    from geomtl_core.distributed import average_gradients

    import torch

    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    # a float32 model called on a CPU tensor: Model.__call__ would only add its per-call overhead (the layers
    # below all receive ``training`` explicitly)
    y_pred = model.call(x, training=True) if isinstance(x, torch.Tensor) else model(x, training=True)
    weights = model.trainable_weights  # one walk of the layer tree per step (it costs ~40 us)
    for v in weights:  # Module.zero_grad(set_to_none=True); frozen variables never receive gradients
        v._value.grad = None
    tasks = [t for t in model.task_names if t in y]
    # the labels of all tasks as one (tasks, batch) tensor, shared by the loss and the accuracies
    target = torch.stack([torch.as_tensor(y[t]).reshape(-1).long() for t in tasks]) if tasks else None
    labelled = target >= 0 if tasks else None
    plain_set(model, _lean_active=True)
    try:
        if sample_weight is None and not getattr(model, "label_smoothing", 0.0) and tasks and standard_loss:
            loss = lean_multitask_loss(model.task_names, tasks, target, labelled, y_pred,
                                       task_weights=model.task_weights, log_vars=model.log_vars,
                                       trackers=model.task_loss_trackers)
        else:
            loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
    finally:
        plain_set(model, _lean_active=False)
    batch = next(i for i in keras.tree.flatten(x) if i is not None).shape[0]
    with torch.no_grad():
        model._loss_tracker.total._value.add_(loss.detach() * batch)
        model._loss_tracker.count._value.add_(float(batch))
    if weights:
        loss.backward()
        grads = [v._value.grad for v in weights]  # float32 (lean path): ``.value`` would only add a check
        average_gradients(grads)
        with torch.no_grad():
            model.optimizer.apply(grads, weights)
    accuracies = fast_accuracies(model)
    if accuracies is not None and tasks and all(t in accuracies for t in tasks):
        # MaskedAccuracy.update_state of every task (unweighted, as compiled metrics are), batched
        with torch.no_grad(), one_thread():
            hits = top1_hit_counts([y_pred[t] for t in tasks], target, labelled)
            torch._foreach_add_([accuracies[t].total._value for t in tasks], list(hits.unbind()))
            torch._foreach_add_([accuracies[t].count._value for t in tasks],
                                list(labelled.sum(dim=1).float().unbind()))
    elif model._compile_metrics is not None:
        model._compile_metrics.update_state(y, y_pred, sample_weight=sample_weight)
    steps = getattr(model, "_lean_steps", 0)
    plain_set(model, _lean_steps=steps + 1)
    if steps % model.log_every == 0 or getattr(model, "_lean_logs", None) is None:
        plain_set(model, _lean_logs=model.get_metrics_result())
    return model._lean_logs


def keras_distributed_step(model, data):
    """Keras' step with the gradient all-reduce (the fallback of the lean step when distributed)."""
    from geomtl_core.distributed import average_gradients

    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    y_pred = model(x, training=True)
    model.zero_grad()
    loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
    model._loss_tracker.update_state(loss, sample_weight=ops.shape(x)[0])
    if model.optimizer is not None:
        loss = model.optimizer.scale_loss(loss)
    loss.backward()
    weights = model.trainable_weights[:]
    grads = [v.value.grad for v in weights]
    average_gradients(grads)
    import torch

    with torch.no_grad():
        model.optimizer.apply(grads, weights)
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
