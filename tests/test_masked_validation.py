"""A validation image outside every cell (label -1) changes neither the loss nor the accuracy of that head."""

import geomtl_core  # noqa: F401 - torch backend
from geomtl_core.models.multitask import GeoMTLModel, compile_model

import keras
import numpy as np
import pytest


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    m = GeoMTLModel({"cells": 4}, {"s3": 3}, backbone="small_cnn", input_size=32, width=0.25, neck_units=16)
    compile_model(m, keras.optimizers.SGD(0.01))
    return m


def _eval(model, x, y):
    return model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)


def test_outside_image_is_masked_from_its_head(model):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (12, 32, 32, 3)).astype("uint8")
    y = {"cells": rng.integers(0, 4, 12), "s3": rng.integers(0, 3, 12)}
    clean = _eval(model, x[:11], {k: v[:11] for k, v in y.items()})
    y_out = {"cells": np.concatenate([y["cells"][:11], [-1]]), "s3": y["s3"]}
    with_outside = _eval(model, x, y_out)
    assert with_outside["cells_loss"] == pytest.approx(clean["cells_loss"], rel=1e-5)
    assert with_outside["cells_acc"] == pytest.approx(clean["cells_acc"], abs=1e-7)
    # the other head still sees the image (it has a scene label): its numbers include it
    both = _eval(model, x, y)
    assert with_outside["s3_loss"] == pytest.approx(both["s3_loss"], rel=1e-6)
    # and the old behaviour (class 0 for an outside image) would have changed the head's loss
    y_zero = {"cells": np.concatenate([y["cells"][:11], [0]]), "s3": y["s3"]}
    assert _eval(model, x, y_zero)["cells_loss"] != pytest.approx(clean["cells_loss"], rel=1e-5)
