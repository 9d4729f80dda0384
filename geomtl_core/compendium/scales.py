"""The named scales of the compendium (smoke, default, full): data size, input size, backbone,
partitionings, epochs, and the training seeds every configuration runs with (the seed varies head
initialisation, data order and augmentation). The one table the runner and the experiments read."""

from __future__ import annotations

from geomtl_core.errors import InputError

SCALES: dict[str, dict] = {
    # CI: a few thousand locations, a small random frozen CNN, two epochs: checks that everything runs.
    "smoke": {"n": 3000, "size": 64, "fov_km": 300.0, "backbone": "small_cnn", "pretrained": False,
              "tau_min": 5, "tau_max": [600, 250, 100], "epochs": 2, "batch": 128, "scratch_epochs": 1,
              "fractions": [0.3, 1.0], "workers": 2, "seeds": [0]},
    # A laptop CPU, under an hour: all 100K locations (about 67K train after the split's buffer), ImageNet
    # EfficientNet-Lite0 features, 64 px, 3 seeds. Budget: 6 epochs, chosen once on validation (the first
    # default runs' validation accuracy stopped rising by epoch 4; see each run's history.csv).
    "default": {"n": None, "size": 64, "fov_km": 300.0, "backbone": "efficientnet_lite0", "pretrained": True,
                "tau_min": 10, "tau_max": [1000, 300, 100], "epochs": 6, "batch": 256, "scratch_epochs": 3,
                "fractions": [0.1, 0.3, 1.0], "workers": 2, "seeds": [0, 1, 2]},
    # A GPU: larger inputs and longer budgets (backbone still frozen; the scratch runs train end to end).
    "full": {"n": None, "size": 96, "fov_km": 300.0, "backbone": "efficientnet_lite0", "pretrained": True,
             "tau_min": 10, "tau_max": [1000, 300, 100], "epochs": 30, "batch": 256, "scratch_epochs": 15,
             "fractions": [0.1, 0.3, 1.0], "workers": 8, "seeds": [0, 1, 2, 3, 4]},
}


def scale_params(scale: str) -> dict:
    """A copy of the named scale's parameters; an unknown name is an error listing the valid ones."""
    if scale not in SCALES:
        raise InputError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    return dict(SCALES[scale])
