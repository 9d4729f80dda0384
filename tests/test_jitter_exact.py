"""The training transform's fast parts (issue #15, pipeline speed): ColorJitter runs in place but produces
exactly the pixels of its out-of-place definition; RandomResizedCrop draws torchvision's crop distribution."""

from __future__ import annotations

from geomtl_core.data.images import ColorJitter

import pytest
import torch


def _reference(jitter: ColorJitter, x: torch.Tensor) -> torch.Tensor:
    """The out-of-place formulation the in-place one replaced."""
    b, c, s = (1 + jitter.strength * (2 * torch.rand(3) - 1)).tolist()
    xf = x.float() * b
    mean = torch.dot(jitter._GRAY, xf.mean(dim=(-2, -1)))
    xf = (xf - mean) * c + mean
    gray = torch.einsum("c,chw->hw", jitter._GRAY, xf)
    xf = (xf - gray) * s + gray
    return xf.clamp_(0, 255).round_().to(torch.uint8)


def test_in_place_jitter_is_bit_identical_to_the_reference():
    g = torch.Generator().manual_seed(0)
    for k in range(50):
        x = torch.randint(0, 256, (3, 24 + k % 5, 31), dtype=torch.uint8, generator=g)
        before = x.clone()
        jitter = ColorJitter(0.4)
        torch.manual_seed(k)
        want = _reference(jitter, x)
        torch.manual_seed(k)
        got = jitter(x)
        assert torch.equal(got, want)
        assert torch.equal(x, before)  # the input is not modified


def _torchvision_params(height: int, width: int, n: int, scale=(0.66, 1.0)) -> torch.Tensor:
    from torchvision.transforms import v2

    t = v2.RandomResizedCrop(32, scale=scale)
    img = torch.zeros((3, height, width), dtype=torch.uint8)
    return torch.tensor([list(t.make_params([img]).values()) for _ in range(n)], dtype=torch.float64)


@pytest.mark.parametrize(("height", "width"), [(120, 160), (115, 300), (300, 60)])
def test_random_resized_crop_draws_torchvision_distribution(height, width):
    """Same crop distribution as torchvision's (first fitting draw of 10, else the clamped centre crop):
    crop shares, aspect ratios, offsets and fallback rate agree within sampling error."""
    from geomtl_core.data.images import RandomResizedCrop

    n = 3000
    torch.manual_seed(0)
    want = _torchvision_params(height, width, n)
    torch.manual_seed(1)
    rrc = RandomResizedCrop(32, scale=(0.66, 1.0))
    got = torch.tensor([rrc.params(height, width) for _ in range(n)], dtype=torch.float64)
    top, left, h, w = got.T
    assert bool(((top >= 0) & (left >= 0) & (top + h <= height) & (left + w <= width) & (h > 0) & (w > 0)).all())

    def summary(p):
        t, le, hh, ww = p.T
        share = hh * ww / (height * width)
        centred = (t == (height - hh) // 2) & (le == (width - ww) // 2)  # the fallback (or a chance centre)
        return torch.stack([share.mean(), share.std(), torch.log(ww / hh).mean(), torch.log(ww / hh).std(),
                            (t / (height - hh + 1)).mean(), centred.double().mean()])

    a, b = summary(got), summary(want)
    assert torch.allclose(a, b, atol=0.03), (a, b)


def test_random_resized_crop_is_seeded_and_resizes():
    from geomtl_core.data.images import RandomResizedCrop

    x = torch.randint(0, 256, (3, 90, 140), dtype=torch.uint8)
    rrc = RandomResizedCrop(48, scale=(0.66, 1.0))
    torch.manual_seed(3)
    a = rrc(x)
    torch.manual_seed(3)
    assert torch.equal(rrc(x), a) and a.shape == (3, 48, 48) and a.dtype == torch.uint8
