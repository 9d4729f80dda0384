"""One decode for training, evaluation and prediction: EXIF orientation is applied everywhere."""

import io

from geomtl_core.data.dataset import GeoImageDataset, LabelTable
from geomtl_core.data.images import TransformConfig, decode_image, jpeg_orientation
from geomtl_core.data.shards import open_source, write_shards

import numpy as np
import piexif
import pytest
from PIL import Image, ImageOps


def _scene() -> np.ndarray:
    """An asymmetric picture (bright top-left quadrant, a gradient) so every orientation differs."""
    y, x = np.mgrid[0:48, 0:64]
    img = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).astype(np.uint8)
    img[:16, :20] = 255
    return img


def _jpeg(img: np.ndarray, orientation: int | None) -> bytes:
    buf = io.BytesIO()
    kwargs = {"exif": piexif.dump({"0th": {piexif.ImageIFD.Orientation: orientation}})} if orientation else {}
    Image.fromarray(img).save(buf, format="JPEG", quality=98, **kwargs)
    return buf.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_decode_matches_pillows_exif_transpose(orientation):
    data = _jpeg(_scene(), orientation)
    assert jpeg_orientation(data) == orientation
    ours = decode_image(data).astype(int)
    ref = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")).astype(int)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 2  # same pixels up to IDCT rounding of the two decoders


def test_orientation_reader_is_lenient():
    assert jpeg_orientation(_jpeg(_scene(), None)) == 1
    assert jpeg_orientation(b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00XXgarbage") == 1
    assert jpeg_orientation(b"") == 1


def test_training_and_evaluation_see_the_photo_upright(tmp_path):
    """A photo stored sideways with orientation 6 reaches the model as its upright twin does."""
    upright = np.ascontiguousarray(np.rot90(_scene(), -1))  # what the camera saw
    stored = _scene()  # the sensor's pixels, to be turned by orientation 6 (90° clockwise)
    write_shards([("upright", _jpeg(upright, None)), ("tagged", _jpeg(stored, 6))], tmp_path / "s")
    src = open_source(tmp_path / "s")
    labels = LabelTable(source_index=np.arange(2), img_id=np.asarray(src.ids), lat=np.zeros(2), lon=np.zeros(2))
    ds = GeoImageDataset(src, labels, TransformConfig(size=32), train=False)
    a, b = (ds.load(k).numpy().astype(int) for k in range(2))
    assert np.abs(a - b).mean() < 3
    assert np.abs(a - np.rot90(b, 1)).mean() > 20  # the other way up would be far off
