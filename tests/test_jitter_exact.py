"""ColorJitter runs in place (issue #15, pipeline speed) but must produce exactly the pixels of its
out-of-place definition: the training images do not change."""

from __future__ import annotations

from geomtl_core.data.images import ColorJitter

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
