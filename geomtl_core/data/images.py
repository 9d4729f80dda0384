"""Image decoding with guards, and the train / eval transforms (torchvision v2 on uint8 tensors).

JPEGs decode with simplejpeg (libjpeg-turbo), asking for DCT-domain downscaling to the
smallest size that still covers the crop; other formats fall back to Pillow. Either way the
image comes out upright (EXIF orientation applied): :func:`decode_image` is the one decode used by
training, evaluation and prediction, so all three see the same pixels.
"""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass

from geomtl_core.errors import InputError

import numpy as np
import simplejpeg
import torch
from PIL import Image, ImageOps
from torchvision.transforms import v2

MAX_PIXELS = 64_000_000
"""Refuse images above 64 megapixels (decompression bombs); MP-16 photos are ~0.1-1 MP."""


class ImageDecodeError(InputError):
    """An image that cannot be decoded or is refused; carries the reason."""


def decode_image(data: bytes, min_side: int | None = None, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """RGB uint8 array (H, W, 3) of encoded bytes; raises :class:`ImageDecodeError`.

    ``min_side``: decode JPEGs at the smallest DCT scale whose shorter side is ``>= min_side``.
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    if simplejpeg.is_jpeg(data):
        try:
            h, w, _cs, _sub = simplejpeg.decode_jpeg_header(data)
        except ValueError as exc:
            raise ImageDecodeError(f"corrupt JPEG header: {exc}") from exc
        if h * w > max_pixels:
            raise ImageDecodeError(f"image of {w}x{h} px exceeds the {max_pixels:,}-pixel limit")
        kwargs = {}
        if min_side:
            scale = min(h, w) / min_side
            kwargs = {"min_height": int(np.ceil(h / scale)), "min_width": int(np.ceil(w / scale))} if scale > 1 else {}
        try:
            img = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True, **kwargs)
        except ValueError as exc:
            raise ImageDecodeError(f"corrupt or truncated JPEG: {exc}") from exc
        return apply_orientation(img, jpeg_orientation(data))
    return _decode_pillow(data, max_pixels)


def jpeg_orientation(data: bytes) -> int:
    """EXIF orientation (1-8) of JPEG bytes, read from the APP1 segment without decoding pixels;
    1 (upright) when there is none or it is malformed (the decoder reports real corruption)."""
    pos, n = 2, len(data)
    while pos + 4 <= n and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no EXIF before the pixels
            return 1
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xE1 and data[pos + 4 : pos + 10] == b"Exif\0\0":
            return _tiff_orientation(data[pos + 10 : pos + 2 + length])
        pos += 2 + length
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    try:
        order = {b"II": "<", b"MM": ">"}[tiff[:2]]
        (ifd,) = struct.unpack_from(order + "I", tiff, 4)
        (count,) = struct.unpack_from(order + "H", tiff, ifd)
        for k in range(count):
            tag, typ, _n = struct.unpack_from(order + "HHI", tiff, ifd + 2 + 12 * k)
            if tag == 0x0112 and typ == 3:
                (value,) = struct.unpack_from(order + "H", tiff, ifd + 2 + 12 * k + 8)
                return value if 1 <= value <= 8 else 1
    except (KeyError, struct.error):
        pass
    return 1


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an (H, W, C) array stored with EXIF ``orientation`` upright (as ``ImageOps.exif_transpose``)."""
    if orientation == 2:
        return img[:, ::-1]
    if orientation == 3:
        return img[::-1, ::-1]
    if orientation == 4:
        return img[::-1]
    if orientation == 5:
        return img.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(img, -1)
    if orientation == 7:
        return img[::-1, ::-1].transpose(1, 0, 2)
    if orientation == 8:
        return np.rot90(img, 1)
    return img


def _decode_pillow(data: bytes, max_pixels: int) -> np.ndarray:
    """Non-JPEG formats: EXIF orientation applied, alpha dropped, any mode to 8-bit RGB."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > max_pixels:
                raise ImageDecodeError(f"image of {im.width}x{im.height} px exceeds the {max_pixels:,}-pixel limit")
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                arr = (255 * arr / max(arr.max(), 1)).astype(np.uint8)
                im = Image.fromarray(arr)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                bg = Image.new("RGB", im.size, (255, 255, 255))
                bg.paste(im, mask=im.getchannel("A"))
                im = bg
            return np.asarray(im.convert("RGB"))
    except ImageDecodeError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"not a decodable image: {exc}") from exc


@dataclass(frozen=True)
class TransformConfig:
    """Input size and augmentation (GeoEstimation: RandomResizedCrop 0.66-1, flip; eval: resize+centre crop)."""

    size: int = 64
    crop_scale: tuple[float, float] = (0.66, 1.0)
    flip: bool = True
    jitter: float = 0.2
    resize_ratio: float = 256 / 224


def train_transform(cfg: TransformConfig) -> torch.nn.Sequential:
    """Random crop of 66-100% of the area, horizontal flip, colour jitter; uint8 CHW in and out.

    Plain modules in a ``Sequential``: torchvision's v2 wrappers spend ~20 us a photo each on input
    flattening and type dispatch, a tenth of the whole transform at 96 px."""
    steps: list = [RandomResizedCrop(cfg.size, scale=cfg.crop_scale)]
    if cfg.flip:
        steps.append(RandomHorizontalFlip())
    if cfg.jitter:
        steps.append(ColorJitter(cfg.jitter))
    return torch.nn.Sequential(*steps)


class RandomHorizontalFlip(torch.nn.Module):
    """Mirror left-right with probability 1/2 (one draw from torch's RNG)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(-1) if torch.rand(()).item() < 0.5 else x


class RandomResizedCrop(torch.nn.Module):
    """torchvision's RandomResizedCrop (same distribution: up to 10 draws of area share and log aspect ratio,
    the first that fits, else the centre crop clamped to the ratio range; antialiased bilinear resize) with
    all draws taken by one ``torch.rand`` call and the rest in float math: torchvision's loop of tensor calls
    costs more than the resize itself (~60 us a photo here) when candidates miss."""

    def __init__(self, size: int, scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3)):
        super().__init__()
        self.size, self.scale, self.ratio = int(size), tuple(scale), tuple(ratio)
        self._log_ratio = (math.log(ratio[0]), math.log(ratio[1]))

    def params(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(top, left, crop height, crop width) for an image of ``height`` x ``width``."""
        u = torch.rand(22).tolist()  # torch's RNG (seeded per worker), drawn once; the rest is float math
        lo, hi = self._log_ratio
        for k in range(10):
            area = height * width * (self.scale[0] + (self.scale[1] - self.scale[0]) * u[2 * k])
            aspect = math.exp(lo + (hi - lo) * u[2 * k + 1])
            cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < cw <= width and 0 < ch <= height:
                return int(u[20] * (height - ch + 1)), int(u[21] * (width - cw + 1)), ch, cw
        in_ratio = width / height  # torchvision's fallback: the centre crop, clamped to the ratio range
        cw, ch = width, height
        if in_ratio < min(self.ratio):
            ch = round(cw / min(self.ratio))
        elif in_ratio > max(self.ratio):
            cw = round(ch * max(self.ratio))
        return (height - ch) // 2, (width - cw) // 2, ch, cw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, left, h, w = self.params(x.shape[-2], x.shape[-1])
        return v2.functional.resized_crop(x, top, left, h, w, [self.size, self.size], antialias=True)


class ColorJitter(torch.nn.Module):
    """Brightness, contrast and saturation jitter as one affine colour map on the small crop.

    Factors are drawn uniformly from ``[1 - s, 1 + s]`` with torch's RNG (seeded per worker);
    applied in a fixed order without intermediate rounding, ~4x cheaper than torchvision's.
    """

    _GRAY = torch.tensor([0.299, 0.587, 0.114])

    def __init__(self, strength: float = 0.2):
        super().__init__()
        self.strength = strength

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, s = (1 + self.strength * (2 * torch.rand(3) - 1)).tolist()
        # in place on one float buffer: the same operations in the same order as out-of-place
        # ((x*b - mean)*c + mean, then (. - gray)*s + gray), so bit-identical pixels, fewer allocations
        xf = x.float().mul_(b)
        mean = torch.dot(self._GRAY, xf.mean(dim=(-2, -1)))
        xf.sub_(mean).mul_(c).add_(mean)
        gray = torch.einsum("c,chw->hw", self._GRAY, xf)
        xf.sub_(gray).mul_(s).add_(gray)
        return xf.clamp_(0, 255).round_().to(torch.uint8)


def eval_transform(cfg: TransformConfig, five_crop: bool = False):
    """Resize the shorter side to size*256/224 then centre crop (or five crops, stacked)."""
    resize = v2.Resize(round(cfg.size * cfg.resize_ratio), antialias=True)
    if not five_crop:
        return v2.Compose([resize, v2.CenterCrop(cfg.size)])

    def five(x: torch.Tensor) -> torch.Tensor:
        return torch.stack(v2.functional.five_crop(resize(x), cfg.size))

    return five


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """HWC uint8 numpy -> CHW uint8 tensor (no copy of pixel data beyond the permute view)."""
    img = np.ascontiguousarray(img)
    return torch.from_numpy(img if img.flags.writeable else img.copy()).permute(2, 0, 1)
