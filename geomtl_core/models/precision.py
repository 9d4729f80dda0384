"""The Keras dtype policy of a training run (``train.mixed_precision``): bf16 compute on GPUs, float32 on CPUs."""

from __future__ import annotations

from geomtl_core.errors import InputError

POLICIES = ("auto", "float32", "mixed_bfloat16")


def dtype_policy(setting: str = "auto", cuda: bool | None = None) -> str:
    """Keras policy name for ``setting``: "auto" is mixed_bfloat16 when a CUDA GPU is present, else float32.

    bfloat16 keeps float32's exponent range, so unlike float16 it needs no loss scaling; variables, BatchNorm
    statistics and the heads' logits stay float32 (see ``GeoMTLModel.call``).
    """
    if setting not in POLICIES:
        raise InputError(f"train.mixed_precision must be one of {', '.join(POLICIES)}, got {setting!r}")
    if setting != "auto":
        return setting
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    return "mixed_bfloat16" if cuda else "float32"
