"""Fine-tuning only the last blocks of a functional backbone: which layer starts them, the frozen part's
activations (what the cache stores, so the frozen part runs once per image), and the tuned tail run from them.

The tail is a sub-model of the same layers, so weights trained through it are the backbone's weights.
"""

from __future__ import annotations

import weakref

from geomtl_core.errors import InputError

import keras
import numpy as np
from keras import ops

_STEMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # built once per backbone
_TAILS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def tuned_from(backbone_name: str, net: keras.Model, blocks: int) -> str:
    """Name of the first layer of the last ``blocks`` blocks (EfficientNet-Lite0: its 16 MBConv blocks)."""
    if backbone_name != "efficientnet_lite0":
        raise InputError(f"finetune_blocks is implemented for efficientnet_lite0, not {backbone_name!r}")
    from geomtl_core.models.effnet_lite import _block_specs

    n = len(_block_specs())
    if not 1 <= blocks <= n:
        raise InputError(f"finetune_blocks must be in 1..{n}, received: {blocks}")
    first = n - blocks
    names = [layer.name for layer in net.layers if layer.name.startswith(f"block{first}_")]
    if not names:
        raise InputError(f"backbone has no layers of block {first}")
    return names[0]


def freeze_below(net: keras.Model, first: str) -> None:
    """Every layer before ``first`` stops training (its BatchNorms then run in inference mode)."""
    names = [layer.name for layer in net.layers]
    for layer in net.layers[: names.index(first)]:
        layer.trainable = False


def tail_model(net: keras.Model, first: str) -> keras.Model:
    """The backbone from layer ``first`` to its output, sharing the layers (and weights) of ``net``."""
    return keras.Model(net.get_layer(first).input, net.output, name="tail")


def frozen_activations(net: keras.Model, first: str, x):
    """Flattened activations entering layer ``first`` (inference mode), one row per image."""
    stem = _STEMS.get(net)
    if stem is None or stem[0] != first:
        stem = (first, keras.Model(net.input, net.get_layer(first).input, name="stem"))
        _STEMS[net] = stem
    a = stem[1](x, training=False)
    return ops.reshape(a, (ops.shape(a)[0], -1))


def run_tail(tail: keras.Model, first: str, flat, training: bool = False):
    """The tuned blocks' output from flattened activations (``tail`` is :func:`tail_model`'s, or the whole
    backbone, whose tail is then cut at ``first``)."""
    if tail.name != "tail":
        if tail not in _TAILS:
            _TAILS[tail] = tail_model(tail, first)
        tail = _TAILS[tail]
    shape = tuple(tail.inputs[0].shape[1:])
    return tail(ops.reshape(flat, (-1, *shape)), training=training)


def transfer_tail_weights(source: keras.Model, target: keras.Model) -> int:
    """Copy the weights of every layer of ``source`` (a tail) into the same-named layer of ``target``;
    returns how many layers were copied."""
    names = {layer.name for layer in target.layers}
    n = 0
    for layer in source.layers:
        if layer.weights and layer.name in names:
            target.get_layer(layer.name).set_weights(layer.get_weights())
            n += 1
    return n


def head_weights(model) -> dict[str, np.ndarray]:
    """What a model on a frozen backbone trains, by name: its neck (and the neck's normalisation), every head and
    the learned loss weights; no optimizer state (what a run keeps of itself, :func:`set_head_weights`)."""
    out = {f"{name}/{i}": w for name in ("neck", "neck_bn") for i, w in enumerate(getattr(model, name).get_weights())}
    for task, layer in model.heads.items():
        out |= {f"heads/{task}/{i}": w for i, w in enumerate(layer.get_weights())}
    if model.log_vars is not None:
        out["log_vars"] = np.asarray(ops.convert_to_numpy(model.log_vars))
    return out


def set_head_weights(model, weights: dict[str, np.ndarray]) -> None:
    """Set ``model``'s neck, heads and learned loss weights from :func:`head_weights` of a model with the same
    heads; a missing or extra name is an error (another architecture)."""
    used = set()
    for prefix, layer in [(n, getattr(model, n)) for n in ("neck", "neck_bn")] + \
            [(f"heads/{t}", h) for t, h in model.heads.items()]:
        names = [f"{prefix}/{i}" for i in range(len(layer.get_weights()))]
        layer.set_weights([weights[n] for n in names])
        used |= set(names)
    if model.log_vars is not None:
        model.log_vars.assign(weights["log_vars"])
        used.add("log_vars")
    if set(weights) != used:
        raise InputError(f"trained weights {sorted(set(weights) ^ used)} do not match the model's neck and heads")


def transfer_head_weights(head_model, full_model) -> None:
    """Copy neck, heads, learned loss weights and any tuned backbone blocks from a model trained on cached
    features (or activations) into its image model (same config), which the bundle then holds."""
    if getattr(head_model, "finetune_blocks", 0):
        transfer_tail_weights(head_model.backbone, full_model.backbone)
    for name in ("neck", "neck_bn"):
        getattr(full_model, name).set_weights(getattr(head_model, name).get_weights())
    for task, layer in head_model.heads.items():
        full_model.heads[task].set_weights(layer.get_weights())
    if head_model.log_vars is not None:
        full_model.log_vars.assign(head_model.log_vars)

