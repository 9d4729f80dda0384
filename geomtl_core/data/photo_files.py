"""Which files are photos, by name or by their first bytes: the one definition that the predictor's folder scan
and the command line's early checks share (standard library only, so a check costs no torch import)."""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".dib", ".tif", ".tiff",
                            ".webp", ".ppm", ".pgm", ".pbm", ".pnm", ".heic", ".heif", ".avif", ".jp2", ".j2k"})
"""File name endings taken as photos (any case); other files in a folder are recognised by content."""

IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"\x00\x00\x00\x0cjP")
"""The first bytes of the image formats recognised by content: JPEG, PNG, GIF, BMP, TIFF, JPEG 2000 (plus WebP and
HEIF/AVIF, see :func:`looks_like_image_bytes`)."""

MORE_MAGIC = (b"\xffO\xffQ", b"P1", b"P2", b"P3", b"P4", b"P5", b"P6", b"P7")
"""Formats that only their file name ending marks in a folder (JPEG 2000 codestream, Netpbm): a file named on its
own may still be one."""


def looks_like_image_bytes(head: bytes) -> bool:
    """The first bytes of a file are those of an image format recognised by content.

    >>> looks_like_image_bytes(b"\\x89PNG\\r\\n"), looks_like_image_bytes(b"IMG_ID,LAT")
    (True, False)
    """
    return head.startswith(IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP") or head[4:8] == b"ftyp"


def looks_like_image(path: Path) -> bool:
    """An image ending, or (any other name) the first bytes of an image format; unreadable files count as
    images, so that their error is reported."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError:
        return True
    return looks_like_image_bytes(head)
