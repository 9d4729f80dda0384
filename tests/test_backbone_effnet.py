"""EfficientNet-Lite0 Keras port: numerically equal to the torch reference, sensible on photos, .keras-safe."""

from __future__ import annotations

from pathlib import Path

from geomtl_core.models import effnet_lite as be

import efficientnet_lite_pytorch  # required dependencies (pyproject.toml): a missing one is an error, not a skip
import keras
import numpy as np
import pytest
import torch

PHOTOS = ("Stonehenge", "Taranaki", "Moscow Kremlin", "St Peter's Basilica", "Church of the Holy Sepulchre")


@pytest.fixture(scope="module")
def state_dict() -> dict[str, np.ndarray]:
    """The ImageNet state_dict as numpy arrays."""
    return be.load_torch_state_dict()


@pytest.fixture(scope="module")
def keras_model() -> keras.Model:
    """The ported Keras backbone (any input size)."""
    return be.efficientnet_lite0()


def torch_reference(image_size: int | None) -> torch.nn.Module:
    """efficientnet_lite_pytorch's own model with the .pth loaded; image_size=None uses dynamic 'same' padding."""
    model = efficientnet_lite_pytorch.EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    sd = torch.load(be.weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(sd)
    return model.eval()


def torch_features(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """Torch extract_features on an NHWC numpy batch, returned NHWC."""
    with torch.no_grad():
        out = model.extract_features(torch.from_numpy(x).permute(0, 3, 1, 2))
    return out.permute(0, 2, 3, 1).numpy()


def run(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Eager inference on a tensor: model.predict / numpy inputs make Keras' torch backend warn once per layer."""
    with torch.no_grad():
        return model(torch.from_numpy(x), training=False).cpu().numpy()


def test_weights_path_exists() -> None:
    path = be.weights_path()
    assert path.is_file() and path.stat().st_size > 18_000_000


@pytest.mark.parametrize(("image_size", "hw"), [(224, (224, 224)), (224, (64, 96)), (None, (97, 131))])
def test_features_match_torch(keras_model: keras.Model, image_size: int | None, hw: tuple[int, int]) -> None:
    """Feature maps equal torch's to float32 precision (static 224 padding, and dynamic for odd sizes)."""
    x = np.random.default_rng(0).normal(size=(2, *hw, 3)).astype("float32")
    ref = torch_features(torch_reference(image_size), x)
    out = run(keras_model, x)
    assert out.shape == ref.shape == (2, -(-hw[0] // 32), -(-hw[1] // 32), 1280)
    diff = np.abs(out - ref).max()
    print(f"max |keras - torch| at {hw}: {diff:.2e} (output max {np.abs(ref).max():.2f})")
    assert diff < 1e-4 * max(1.0, np.abs(ref).max())


def load_photo(path: Path, size: int = 224) -> np.ndarray:
    """Resize the short side to size*8/7 and centre-crop size x size (ImageNet eval style), float 0-255 RGB."""
    from PIL import Image

    im = Image.open(path).convert("RGB")
    scale = size * 8 / 7 / min(im.size)
    im = im.resize((round(im.size[0] * scale), round(im.size[1] * scale)), Image.BILINEAR)
    left, top = (im.size[0] - size) // 2, (im.size[1] - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.float32)


def test_imagenet_classes_on_photos(keras_model: keras.Model, state_dict: dict[str, np.ndarray], shared: Path) -> None:
    """With torch's classifier on pooled Keras features, top-1 equals torch's, and 3 photos get the right class."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES as classes

    folder = shared / "photos" / "landmarks"
    x = np.stack([load_photo(folder / f"{name}.jpg") for name in PHOTOS])
    pre = be.EFFNET_LITE0_PREPROCESS
    x = (x - np.array(pre["mean"], np.float32)) / np.array(pre["std"], np.float32)
    feats = run(keras_model, x).mean(axis=(1, 2))
    logits = feats @ state_dict["_fc.weight"].T + state_dict["_fc.bias"]
    with torch.no_grad():
        ref = torch_reference(224)(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(logits, ref, atol=1e-3)
    assert (logits.argmax(1) == ref.argmax(1)).all()
    top5 = {name: [classes[i] for i in row.argsort()[::-1][:5]] for name, row in zip(PHOTOS, logits, strict=True)}
    print(top5)
    assert "megalith" in top5["Stonehenge"]
    assert "volcano" in top5["Taranaki"]
    assert "palace" in top5["Moscow Kremlin"]


@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
def test_keras_save_load_safe_mode(keras_model: keras.Model, tmp_path: Path) -> None:
    """A .keras round trip with safe_mode=True gives identical outputs (only standard layers are used)."""
    path = tmp_path / "effnet_lite0.keras"
    keras_model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(1).normal(size=(2, 64, 64, 3)).astype("float32")
    np.testing.assert_array_equal(run(keras_model, x), run(loaded, x))


def test_param_count(keras_model: keras.Model, state_dict: dict[str, np.ndarray]) -> None:
    """Backbone: 3.37M trainable (+42k BN statistics); with the 1000-way classifier 4.65M, as published."""
    trainable = sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights)
    total = keras_model.count_params()
    fc = state_dict["_fc.weight"].size + state_dict["_fc.bias"].size
    torch_trainable = sum(v.size for k, v in state_dict.items() if not k.endswith(("running_mean", "running_var")))
    print(f"trainable {trainable:,}, total {total:,}, with classifier {trainable + fc:,}")
    assert trainable + fc == torch_trainable
    assert 3_300_000 < trainable < 3_450_000
    assert 4_600_000 < trainable + fc < 4_700_000


def test_no_weights_build_is_trainable_shape() -> None:
    """pretrained=False builds without touching the .pth, with a fixed-size input too."""
    model = be.efficientnet_lite0(input_shape=(96, 96, 3), pretrained=False, name="lite0_scratch")
    assert model.output_shape == (None, 3, 3, 1280)
    assert model.name == "lite0_scratch"
