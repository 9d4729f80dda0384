"""Where the speed paths run: one decision, taken only where they were measured and tested (issue #22).

The speed paths are ``fast_layers``' single-kernel layers and lean calls (which skip ``Layer.__call__``) and
``GeoMTLModel``'s lean train step. They read private Keras internals (``keras.src`` scopes, variables'
``_value``, the compiled metrics' lists) and skip ``Layer.__call__``, which is where Keras moves inputs to
the variables' device. So they run only on the torch backend on a CPU, under the float32 dtype policy, with
the Keras minor version they were tested with (:data:`TESTED_KERAS`) and its internals importable. Anywhere
else the stock Keras layers, ``Layer.__call__`` and Keras' own ``train_step`` run, and another Keras version
says so with one warning per process.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

__all__ = ["TESTED_KERAS", "FastPath", "current_device", "fast_path_enabled", "fast_path_now", "keras_internals"]

TESTED_KERAS = "3.15"
"""The Keras minor version the speed paths were measured and tested with (``pyproject.toml`` allows others)."""


@dataclass(frozen=True)
class FastPath:
    """The decision: ``enabled`` (also the truth value) and why."""

    enabled: bool
    reason: str

    def __bool__(self) -> bool:
        return self.enabled


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def fast_path_enabled(device: str, dtype_policy: str, keras_version: str, backend: str = "torch",
                      internals: bool = True) -> FastPath:
    """Whether the speed paths apply to a model built now on ``device`` ("cpu", "cuda", "cuda:0", "mps", ...)
    under the dtype policy named ``dtype_policy``, with Keras ``keras_version`` on ``backend``; ``internals``:
    whether the private Keras modules they read could be imported.

    >>> fast_path_enabled("cpu", "float32", "3.15.1")
    FastPath(enabled=True, reason='cpu, float32, keras 3.15')
    >>> fast_path_enabled("cuda:0", "float32", "3.15.1").reason
    "device 'cuda:0' is not the CPU"
    """
    if backend != "torch":
        return FastPath(False, f"backend {backend!r} is not torch")
    if _minor(keras_version) != TESTED_KERAS:
        return FastPath(False, f"keras {keras_version} is not the tested {TESTED_KERAS}.x")
    if not internals:
        return FastPath(False, "keras internals (keras.src scopes and device) not importable")
    if device.split(":")[0] != "cpu":
        return FastPath(False, f"device {device!r} is not the CPU")
    if dtype_policy != "float32":
        return FastPath(False, f"dtype policy {dtype_policy!r} is not float32")
    return FastPath(True, f"cpu, float32, keras {TESTED_KERAS}")


_INTERNALS: tuple | bool | None = False  # False: not looked up yet


def keras_internals():
    """``(in_stateless_scope, in_symbolic_scope, get_device)`` from ``keras.src`` (torch backend), or None
    where they cannot be imported (another backend, another Keras layout): the speed paths are then off."""
    global _INTERNALS
    if _INTERNALS is False:
        try:
            import keras

            if keras.backend.backend() != "torch":
                raise ImportError("not the torch backend")
            from keras.src.backend.common.stateless_scope import in_stateless_scope
            from keras.src.backend.common.symbolic_scope import in_symbolic_scope
            from keras.src.backend.torch.core import get_device

            _INTERNALS = (in_stateless_scope, in_symbolic_scope, get_device)
        except (ImportError, AttributeError):
            _INTERNALS = None
    return _INTERNALS


def current_device() -> str:
    """The device Keras' torch backend puts new variables on (honours ``keras.device`` scopes)."""
    found = keras_internals()
    if found is not None:
        return str(found[2]())
    import torch  # Keras' own order of preference, where its function is not reachable

    if os.environ.get("KERAS_TORCH_DEVICE"):
        return os.environ["KERAS_TORCH_DEVICE"]
    if torch.backends.mps.is_available():
        return "mps"
    return "cuda" if torch.cuda.is_available() else "cpu"


_warned: set[str] = set()


def fast_path_now(dtype_policy: str | None = None) -> FastPath:
    """The decision for what is built now: this process's device, Keras version and backend, and the global
    dtype policy (or ``dtype_policy``). A Keras version other than the tested one warns once per process."""
    import keras

    policy = dtype_policy if dtype_policy is not None else keras.config.dtype_policy().name
    decision = fast_path_enabled(current_device(), policy, keras.__version__, keras.backend.backend(),
                                 keras_internals() is not None)
    if not decision and decision.reason.startswith("keras ") and decision.reason not in _warned:
        _warned.add(decision.reason)
        warnings.warn(f"geomtl's speed layers and lean train step are off: {decision.reason}; the stock Keras "
                      "layers and train_step run instead (slower on a CPU, same results)", stacklevel=2)
    return decision
