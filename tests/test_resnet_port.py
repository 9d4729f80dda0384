"""The Keras ResNet-50 reproduces torchvision's resnet50 feature map once its state_dict is ported."""

import geomtl_core  # noqa: F401 - selects the torch backend
from geomtl_core.models.resnet import (
    RESNET50_PREPROCESS,
    load_resnet50_weights,
    port_torchvision_resnet50,
    resnet50,
    resnet50_weights_path,
)

import keras
import numpy as np
import pytest
import torch
import torchvision


@pytest.fixture(scope="module")
def torch_resnet(tmp_path_factory):
    """A seeded random torchvision resnet50 in eval mode, BN running stats perturbed, saved as a .pth."""
    torch.manual_seed(0)
    m = torchvision.models.resnet50(weights=None).eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):  # away from the (0, 1) defaults, so a skipped BN shows
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    path = tmp_path_factory.mktemp("rn50") / "resnet50-test.pth"
    torch.save(m.state_dict(), path)
    return m, path


def _images() -> np.ndarray:
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    mean, std = np.array(RESNET50_PREPROCESS["mean"]), np.array(RESNET50_PREPROCESS["std"])
    return ((x - mean) / std).astype(np.float32)


def _torch_features(m: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    body = torch.nn.Sequential(*list(m.children())[:-2]).eval()
    with torch.no_grad():
        return body(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()


def _assert_close(a: np.ndarray, b: np.ndarray) -> None:
    scale = float(np.abs(b).max())
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * scale)


def test_ported_resnet50_matches_torchvision(torch_resnet):
    m, path = torch_resnet
    x = _images()
    ref = _torch_features(m, x)
    net = resnet50((64, 64, 3), weights=path)
    out = keras.ops.convert_to_numpy(net(x, training=False))
    assert out.shape == ref.shape == (2, 2, 2, 2048)
    _assert_close(out, ref)


def test_port_rejects_leftover_or_missing_weights(torch_resnet):
    m, _ = torch_resnet
    net = resnet50((64, 64, 3))
    sd = dict(m.state_dict())
    port_torchvision_resnet50(net, {**sd, "fc.weight": torch.zeros(3)})  # the classifier is ignored
    with pytest.raises(ValueError, match="unported"):
        port_torchvision_resnet50(net, {**sd, "layer5.0.conv1.weight": torch.zeros(3)})
    del sd["layer3.2.bn2.running_var"]
    with pytest.raises(KeyError):
        port_torchvision_resnet50(net, sd)


def test_keras_round_trip_with_safe_mode(torch_resnet, tmp_path):
    _, path = torch_resnet
    net = resnet50((64, 64, 3), weights=path)
    x = _images()
    net.save(tmp_path / "rn50.keras")
    back = keras.saving.load_model(tmp_path / "rn50.keras", safe_mode=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(back(x, training=False)),
                                  keras.ops.convert_to_numpy(net(x, training=False)))


def test_weights_lookup_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match="GEOMTL_RESNET50_WEIGHTS") as err:
        resnet50_weights_path()
    assert str(tmp_path / "hub" / "checkpoints") in str(err.value)
    with pytest.raises(FileNotFoundError):
        load_resnet50_weights(tmp_path / "missing.pth")
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    cache = tmp_path / "hub" / "checkpoints"
    torch.save({}, cache / "resnet50-11ad3fa6.pth")
    assert resnet50_weights_path() == cache / "resnet50-11ad3fa6.pth"
    torch.save({}, cache / "resnet50-0676ba61.pth")  # IMAGENET1K_V1, GeoEstimation's weights, wins
    assert resnet50_weights_path() == cache / "resnet50-0676ba61.pth"


def test_geomtl_model_loads_pretrained_resnet50_from_env(torch_resnet, tmp_path, monkeypatch):
    """build_backbone('resnet50', pretrained=True) reads $GEOMTL_RESNET50_WEIGHTS and normalises 0-255 images
    as torchvision does; without the variable or a cached .pth it raises, naming both places."""
    from geomtl_core.models.multitask import GeoMTLModel

    m, path = torch_resnet
    monkeypatch.setenv("GEOMTL_RESNET50_WEIGHTS", str(path))
    model = GeoMTLModel({"cells": 7}, backbone="resnet50", input_size=64, pretrained=True, neck_units=0)
    raw = np.random.default_rng(2).integers(0, 256, (2, 64, 64, 3)).astype("uint8")
    mean, std = np.array(RESNET50_PREPROCESS["mean"]), np.array(RESNET50_PREPROCESS["std"])
    ref = _torch_features(m, ((raw - mean) / std).astype(np.float32)).mean(axis=(1, 2))
    _assert_close(keras.ops.convert_to_numpy(model.backbone_features(raw)), ref)
    logits = keras.ops.convert_to_numpy(model(raw)["cells"])
    model.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(back(raw)["cells"]), logits, rtol=1e-6, atol=1e-6)
    monkeypatch.delenv("GEOMTL_RESNET50_WEIGHTS")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))
    with pytest.raises(FileNotFoundError, match="GEOMTL_RESNET50_WEIGHTS"):
        GeoMTLModel({"cells": 7}, backbone="resnet50", input_size=64, pretrained=True)
