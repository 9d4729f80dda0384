"""Decoded training images with batched augmentation (``data.decode_once``, data/decoded.py): the same crop and
colour distributions as the per-sample pipeline, exact geometry, replay by epoch, faults handled as training
handles them, and a run that trains with it."""

from __future__ import annotations

from geomtl_core.data.dataset import FaultLog, LabelTable
from geomtl_core.data.decoded import DecodedTrainSet, cache_side, crop_boxes, decode_all, jitter, resized_crops
from geomtl_core.data.images import ColorJitter, RandomResizedCrop, TransformConfig

import numpy as np
import pandas as pd
import torch
from toydata import make_toy_dataset, train_tiny_bundle


def test_crop_boxes_draw_the_per_sample_crop_distribution():
    """Catches a wrong area, aspect or offset formula: the boxes' means and spreads equal those of
    RandomResizedCrop.params (100K draws each; tolerances about four standard errors)."""
    g = torch.Generator().manual_seed(0)
    got = crop_boxes(100_000, 40, (0.66, 1.0), (3 / 4, 4 / 3), g).numpy()
    torch.manual_seed(0)
    crop = RandomResizedCrop(32, (0.66, 1.0))
    want = np.array([crop.params(40, 40) for _ in range(100_000)], float)
    np.testing.assert_allclose(got.mean(0), want.mean(0), atol=0.05)
    np.testing.assert_allclose(got.std(0), want.std(0), atol=0.05)
    assert (got[:, 0] + got[:, 2] <= 40).all() and (got[:, 1] + got[:, 3] <= 40).all() and (got >= 0).all()


def test_whole_image_box_is_the_identity_and_flip_mirrors():
    """Catches an offset of the sampling grid (half a pixel, or the crop's centre): the whole square at its own
    size comes back unchanged, and mirrored when flipped."""
    x = torch.randint(0, 256, (3, 16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    box = torch.tensor([[0.0, 0.0, 16.0, 16.0]] * 3)
    same = resized_crops(x, box, 16, None)
    assert torch.allclose(same, x.permute(0, 3, 1, 2).float(), atol=1e-3)
    flipped = resized_crops(x, box, 16, torch.tensor([True, False, True]))
    assert torch.allclose(flipped[0], x[0].permute(2, 0, 1).float().flip(-1), atol=1e-3)
    assert torch.allclose(flipped[1], x[1].permute(2, 0, 1).float(), atol=1e-3)


def test_crop_reads_the_boxed_pixels():
    """Catches swapped rows and columns or a box read from the wrong corner: a box of exactly the top-right
    quarter at its own size returns those pixels."""
    x = torch.arange(16 * 16 * 3, dtype=torch.float32).reshape(1, 16, 16, 3).remainder(251).to(torch.uint8)
    box = torch.tensor([[0.0, 8.0, 8.0, 8.0]])  # top, left, height, width
    got = resized_crops(x, box, 8, None)[0]
    assert torch.allclose(got, x[0, :8, 8:].permute(2, 0, 1).float(), atol=1e-3)


def test_batched_jitter_equals_the_per_image_colour_jitter():
    """Catches a wrong composition of brightness, contrast and saturation into one colour map: with the same
    factors, the batched map equals ColorJitter's three steps to float rounding."""
    x = torch.randint(0, 256, (6, 3, 12, 10), generator=torch.Generator().manual_seed(2)).float()
    g = torch.Generator().manual_seed(5)
    got = jitter(x.clone(), 0.3, g)
    factors = 1 + 0.3 * (2 * torch.rand(6, 3, generator=torch.Generator().manual_seed(5)) - 1)
    gray = ColorJitter._GRAY
    for i in range(6):
        b, c, s = factors[i].tolist()
        xf = x[i] * b
        mean = torch.dot(gray, xf.mean(dim=(-2, -1)))
        xf = (xf - mean) * c + mean
        g2 = torch.einsum("c,chw->hw", gray, xf)
        want = (xf - g2) * s + g2
        assert torch.allclose(got[i], want, atol=1e-3)


def _labels(n: int) -> LabelTable:
    return LabelTable(source_index=np.arange(n), img_id=np.array([f"i{k}" for k in range(n)]),
                      lat=np.zeros(n), lon=np.zeros(n), targets={"cells": np.arange(n) % 4})


def test_batches_replay_by_epoch_and_carry_their_labels():
    """Catches augmentation drawn from a global RNG (a resumed run would see other pixels) and labels that do
    not follow the indices."""
    imgs = np.random.default_rng(0).integers(0, 256, (20, 40, 40, 3), dtype=np.uint8)
    ds = DecodedTrainSet(imgs, _labels(20), TransformConfig(size=32, flip=True), seed=3)
    ds.set_epoch(1)
    a, ya = ds.__getitems__([5, 2, 7])
    torch.manual_seed(123)  # the global RNG must not matter
    ds.set_epoch(1)
    b, _ = ds.__getitems__([5, 2, 7])
    ds.set_epoch(2)
    c, _ = ds.__getitems__([5, 2, 7])
    assert a.shape == (3, 32, 32, 3) and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert ya["cells"].tolist() == [1, 2, 3]


class _Source:
    def __init__(self, blobs):
        self.blobs = blobs

    def read(self, k):
        return f"i{k}", self.blobs[k]


def test_unreadable_image_is_logged_and_replaced_by_the_next(tmp_path):
    """Catches a bad image that stops the run or leaves a blank square: it is logged and the next readable
    image takes its place, as the per-sample pipeline does in training."""
    import simplejpeg

    rng = np.random.default_rng(0)
    good = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(3)]
    blobs = [simplejpeg.encode_jpeg(good[0]), b"not a jpeg", simplejpeg.encode_jpeg(good[2])]
    faults = FaultLog(tmp_path / "faults.tsv")
    out = decode_all(_Source(blobs), _labels(3), 32, 37, faults)
    assert out.shape == (3, 40, 40, 3)
    assert np.array_equal(out[1], out[2])
    assert [e[1] for e in faults.entries()] == ["i1"]


def test_cache_side_keeps_the_decoded_size_within_bounds():
    assert cache_side(64, 64) == 64 and cache_side(32, 40) == 40
    assert cache_side(32, 120) == 40 and cache_side(64, 48) == 64


def test_a_run_trains_on_decoded_images(tmp_path):
    """Catches a loader the trainer cannot consume (shapes, labels, the epoch hook) or images that do not reach
    the model: a toy run with ``decode_once`` logs every epoch and its training loss falls."""
    import json

    toy = make_toy_dataset(tmp_path / "toy", n_train=300, n_val=60, size=40)
    out = train_tiny_bundle(toy, tmp_path / "b", data={"decode_once": True}, train={"epochs": 3})
    assert json.loads((out / "metrics.json").read_text())["train_images"] == 300
    loss = pd.read_csv(out / "history.csv")["loss"].to_numpy()
    assert len(loss) == 3 and loss[-1] < loss[0]
