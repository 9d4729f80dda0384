"""Training images decoded once per run, augmented a whole batch at a time.

Why: for a small model on small images the per-sample pipeline costs more than the model. Measured on the
default scale's small CNN (64 px, batch 512, 2-core AMD EPYC): decoding a proxy JPEG 51 us, the per-sample
random crop and colour jitter 366 us, the model's training step 339 us an image. Here every training image is
decoded once (:func:`~geomtl_core.data.images.decode_image`, the same call and DCT scale as the per-sample
pipeline) into one uint8 array, and each batch is cropped, resized and jittered with batched tensor ops:
the same distributions as :class:`~geomtl_core.data.images.RandomResizedCrop` (area share, log aspect ratio,
up to ten draws, then the centre crop) and :class:`~geomtl_core.data.images.ColorJitter`, resampled bilinearly
by ``grid_sample`` instead of an antialiased resize (crops of 66-100% of the area change scale by at most
1.25x, where antialiasing does little). Evaluation keeps the per-sample pipeline.
"""

from __future__ import annotations

import math

from geomtl_core.data.dataset import FaultLog, LabelTable
from geomtl_core.data.images import ColorJitter, ImageDecodeError, TransformConfig, decode_image, to_tensor

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.transforms import v2

_GRAY = ColorJitter._GRAY  # the per-sample jitter's gray weights, one definition
_TRIES = 10  # candidate crops per image, as torchvision's RandomResizedCrop


def cache_side(size: int, decoded_side: int) -> int:
    """The side of the decoded squares: the decoded images' own shorter side where it lies within
    ``[size, 1.25 size]`` (no resampling before the crop: the proxy's 64 px squares stay as they are), else the
    nearest bound (a crop of 81-100% of the side then changes scale by at most 1.25x)."""
    return int(min(max(decoded_side, size), round(1.25 * size)))


def decode_all(source, labels: LabelTable, size: int, min_side: int, faults: FaultLog | None = None) -> np.ndarray:
    """(N, S, S, 3) uint8: every labelled image of ``source`` decoded as the per-sample pipeline decodes it
    (DCT-scaled to a shorter side of at least ``min_side``), its centre square resized to S (:func:`cache_side`
    of the first image) where it is not already that size. An unreadable image is logged to ``faults`` and
    replaced by the next readable one (as training does)."""
    n = len(labels.img_id)
    out: np.ndarray | None = None
    bad: list[int] = []
    for k in range(n):
        try:
            _id, data = source.read(int(labels.source_index[k]))
            img = decode_image(data, min_side=min_side)
        except (ImageDecodeError, KeyError, OSError) as exc:
            if faults is not None:
                faults.record(str(labels.img_id[k]), str(exc))
            bad.append(k)
            continue
        h, w = img.shape[:2]
        if out is None:
            side = cache_side(size, min(h, w))
            out = np.empty((n, side, side, 3), np.uint8)
        if h == w == side:
            out[k] = img
            continue
        s = min(h, w)
        sq = to_tensor(img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s])
        out[k] = v2.functional.resize(sq, [side, side], antialias=True).permute(1, 2, 0).numpy()
    if out is None:
        raise ImageDecodeError(f"none of the {n} training images could be decoded; see {faults and faults.path}")
    good = np.setdiff1d(np.arange(n), bad)
    for k in bad:  # the next readable image, wrapping around
        out[k] = out[good[np.searchsorted(good, k) % len(good)]]
    return out


def crop_boxes(n: int, side: int, scale: tuple[float, float], ratio: tuple[float, float],
               gen: torch.Generator) -> torch.Tensor:
    """(n, 4) float boxes ``top, left, height, width`` in pixels of a ``side`` x ``side`` image, drawn as
    :class:`~geomtl_core.data.images.RandomResizedCrop` draws them: the first of ten (area share, log aspect)
    candidates that fits, else the whole square (the centre crop clamped to the ratio range, for a square)."""
    u = torch.rand(n, 2 * _TRIES + 2, generator=gen, dtype=torch.float64)
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    area = side * side * (scale[0] + (scale[1] - scale[0]) * u[:, 0:2 * _TRIES:2])
    aspect = torch.exp(lo + (hi - lo) * u[:, 1:2 * _TRIES:2])
    cw, ch = torch.round(torch.sqrt(area * aspect)), torch.round(torch.sqrt(area / aspect))
    fits = (cw > 0) & (cw <= side) & (ch > 0) & (ch <= side)
    first = torch.argmax(fits.to(torch.int8), dim=1)  # index of the first fitting candidate (0 when none fits)
    rows = torch.arange(n)
    any_fit = fits.any(dim=1)
    w = torch.where(any_fit, cw[rows, first], torch.full((n,), float(side), dtype=torch.float64))
    h = torch.where(any_fit, ch[rows, first], torch.full((n,), float(side), dtype=torch.float64))
    top = torch.floor(u[:, -2] * (side - h + 1))
    left = torch.floor(u[:, -1] * (side - w + 1))
    return torch.stack([top, left, h, w], dim=1)


def resized_crops(x: torch.Tensor, boxes: torch.Tensor, size: int, flip: torch.Tensor | None) -> torch.Tensor:
    """Float (B, 3, size, size) crops of uint8 (B, side, side, 3) images at ``boxes`` (bilinear), mirrored where
    ``flip`` is true."""
    b, side = x.shape[0], x.shape[1]
    top, left, h, w = boxes.to(torch.float32).unbind(1)
    sx, sy = w / side, h / side
    if flip is not None:
        sx = torch.where(flip, -sx, sx)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = sx, (2 * left + w) / side - 1
    theta[:, 1, 1], theta[:, 1, 2] = sy, (2 * top + h) / side - 1
    grid = F.affine_grid(theta, [b, 3, size, size], align_corners=False)
    img = x.permute(0, 3, 1, 2).float()
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)


def jitter(xf: torch.Tensor, strength: float, gen: torch.Generator) -> torch.Tensor:
    """:class:`~geomtl_core.data.images.ColorJitter` on a float batch (B, 3, H, W): brightness, contrast and
    saturation factors from ``[1 - s, 1 + s]`` per image, in its order. The three steps compose to one affine
    colour map per image, ``A x + B gray(x) + C`` (``A = s c b``, ``B = c b (1 - s)``, ``C = (1 - c) b m`` with
    ``m`` the image's mean gray level), applied here as one batched 3x3 matrix and a bias."""
    f = 1 + strength * (2 * torch.rand(xf.shape[0], 3, generator=gen) - 1)
    b, c, s = f.unbind(1)
    m = xf.mean(dim=(-2, -1)) @ _GRAY  # (B,) mean gray level
    a_, b_, c_ = s * c * b, c * b * (1 - s), (1 - c) * b * m
    mat = a_.view(-1, 1, 1) * torch.eye(3) + b_.view(-1, 1, 1) * _GRAY.view(1, 1, 3)  # (B, 3, 3)
    n, _, h, w = xf.shape
    out = torch.bmm(mat, xf.reshape(n, 3, h * w)).add_(c_.view(-1, 1, 1))
    return out.view(n, 3, h, w)


class DecodedTrainSet(Dataset):
    """``(images, {task: labels})`` batches of a run's training split from its decoded images (``__getitems__``:
    the loader asks for whole batches; :meth:`collate_fn` passes them through), channels-last uint8 as the
    per-sample pipeline gives. Augmentation draws from one generator reseeded by :meth:`set_epoch`: an epoch's
    pixels depend only on (seed, epoch), so a resumed run replays them; the loader runs in the main process."""

    def __init__(self, images: np.ndarray, labels: LabelTable, cfg: TransformConfig, seed: int, source=None):
        self.images = torch.from_numpy(images)
        self.labels, self.source = labels, source  # the source: for callers that re-read the split's files
        self.cfg, self.seed = cfg, seed
        self.y = {k: torch.from_numpy(np.asarray(v, dtype=np.int64)) for k, v in labels.targets.items()}
        self.gen = torch.Generator()
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.gen.manual_seed(self.seed * 100_003 + 7_919 * epoch + 1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, k: int):
        x, y = self.__getitems__([k])
        return x[0], {t: v[0] for t, v in y.items()}

    def __getitems__(self, ks: list[int]):
        idx = torch.as_tensor(ks, dtype=torch.long)
        x = self.images[idx]
        side = x.shape[1]
        boxes = crop_boxes(len(idx), side, self.cfg.crop_scale, (3 / 4, 4 / 3), self.gen)
        flip = torch.rand(len(idx), generator=self.gen) < 0.5 if self.cfg.flip else None
        xf = resized_crops(x, boxes, self.cfg.size, flip)
        if self.cfg.jitter:
            xf = jitter(xf, self.cfg.jitter, self.gen)
        out = xf.clamp_(0, 255).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        return out, {t: v[idx] for t, v in self.y.items()}

    @staticmethod
    def collate_fn(batch):
        """The batch :meth:`__getitems__` made, unchanged."""
        return batch
