"""The encoded image formats the served model accepts, and how they are recognised and named.

One list for everything that takes images from outside (the pyfunc, the CLI's ``predict``, the
app's uploader): the formats the training decoder (``tf.io.decode_image``) reads. Recognition is by
magic number, so a file's name or a caller's claim never decides what its bytes are.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Encoded formats the training decoder (tf.io.decode_image) reads and the contract promises.
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "GIF")
#: File extensions of each format (the CLI's folder search, the app's uploader).
FORMAT_SUFFIXES = {"JPEG": (".jpg", ".jpeg"), "PNG": (".png",), "BMP": (".bmp",), "GIF": (".gif",)}
IMAGE_SUFFIXES = tuple(suffix for fmt in IMAGE_FORMATS for suffix in FORMAT_SUFFIXES[fmt])

_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"))


def formats_text(formats: Sequence[str] = IMAGE_FORMATS) -> str:
    """``JPEG, PNG, BMP or GIF``: how every message names the accepted formats."""
    return formats[0] if len(formats) == 1 else f"{', '.join(formats[:-1])} or {formats[-1]}"


def sniff_format(raw: bytes) -> str | None:
    """The image format from its magic number (PNG/JPEG/GIF/BMP), or None."""
    for magic, fmt in _MAGIC:
        if raw.startswith(magic):
            return fmt
    # BMP: "BM" plus a plausible header; the two letters alone are also valid base64 text.
    if raw[:2] == b"BM" and len(raw) > 26 and raw[14] in (12, 40, 52, 56, 64, 108, 124):
        return "BMP"
    return None
