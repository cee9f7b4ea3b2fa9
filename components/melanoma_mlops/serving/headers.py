"""Reading an encoded image's header, and refusing it before any pixel is decoded.

Headers are checked first (format, dimensions: a few kB of PNG can declare gigapixels), read by
this module itself so that PIL's own decompression-bomb error never reaches a user. The declared
size is held against the ceiling :data:`~melanoma_mlops.serving.memory_budget.MAX_IMAGE_PIXELS`,
and what decoding it will cost against this process's decode budget
(:func:`~melanoma_mlops.serving.memory_budget.decode_budget`). A JPEG at least
:data:`DRAFT_MARGIN` times larger than the model input is decoded at reduced scale (PIL's draft
mode; :mod:`melanoma_mlops.serving.decoding`), so it costs far less than its declared size; PNG,
BMP and GIF have no reduced-scale decoding, so their full size counts against the limit.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import (
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    ImageFile,
    JpegImagePlugin,
    PngImagePlugin,
    UnidentifiedImageError,
)

from melanoma_mlops.serving.errors import InvalidImageError, input_name
from melanoma_mlops.serving.formats import IMAGE_FORMATS, formats_text, sniff_format
from melanoma_mlops.serving.memory_budget import DECODE_BYTES_PER_PIXEL, MAX_IMAGE_PIXELS, decode_budget

#: Bytes per pixel *of the reduced image* on the JPEG draft path (PIL decode 3 B, RGB 3 B, resize 16 B).
DRAFT_BYTES_PER_PIXEL = 22
#: A progressive JPEG keeps its DCT coefficients for the whole image while decoding, even at
#: reduced scale: up to 2 bytes x 3 components per declared pixel (measured: 99 MP 4:2:0, +292 MiB).
PROGRESSIVE_BYTES_PER_PIXEL = 6
#: A drafted JPEG keeps at least this many times the model's input size on its shorter side.
DRAFT_MARGIN = 4
#: The largest model input the header check assumes when it does not know the model (ResNet50).
DEFAULT_TARGET_SIZE = 224

# Constructing a format's ImageFile directly parses its header without Image.open's
# decompression-bomb check, whose raw message ("could be decompression bomb DOS attack") and
# process-global threshold are not ours: our limits decide, and say so in our words.
_PLUGINS: dict[str, type[ImageFile.ImageFile]] = {
    "JPEG": JpegImagePlugin.JpegImageFile,
    "PNG": PngImagePlugin.PngImageFile,
    "GIF": GifImagePlugin.GifImageFile,
    "BMP": BmpImagePlugin.BmpImageFile,
}


@dataclass(frozen=True)
class Header:
    """What an encoded image declares, and what decoding it for a model input will cost."""

    format: str
    width: int
    height: int
    #: JPEG draft scale (1, 2, 4 or 8) for the target size; 1 means full-size decoding.
    draft_scale: int = 1
    progressive: bool = False

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def decode_bytes(self) -> int:
        """Peak memory of decoding this image into a model input."""
        if self.draft_scale == 1:
            return self.pixels * DECODE_BYTES_PER_PIXEL
        drafted = math.ceil(self.width / self.draft_scale) * math.ceil(self.height / self.draft_scale)
        extra = self.pixels * PROGRESSIVE_BYTES_PER_PIXEL if self.progressive else 0
        return drafted * DRAFT_BYTES_PER_PIXEL + extra


def draft_scale(width: int, height: int, target_size: int) -> int:
    """The reduction libjpeg applies in PIL's draft mode for a request of DRAFT_MARGIN x target.

    Mirrors ``JpegImageFile.draft``: the largest of 8, 4, 2 that keeps both sides at or above the
    requested size, else 1.
    """
    request = DRAFT_MARGIN * max(int(target_size), 1)
    scale = min(width // request, height // request)
    return next((m for m in (8, 4, 2) if scale >= m), 1)


def open_header(raw: bytes, fmt: str) -> ImageFile.ImageFile:
    """A lazily decoded PIL image of ``fmt`` (header parsed, no bomb check: ours come first)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return _PLUGINS[fmt](io.BytesIO(raw))


def open_image(raw: bytes, row: int | str = 0) -> ImageFile.ImageFile:
    """A lazily decoded PIL image of vetted bytes (header parsed; decode it inside ``decode_slot``)."""
    fmt = sniff_format(raw)
    if fmt is None:
        raise _unknown_format(raw, input_name(row), IMAGE_FORMATS)
    return open_header(raw, fmt)


def read_header(
    raw: bytes,
    row: int | str = 0,
    max_pixels: int | None = None,
    *,
    target_size: int = DEFAULT_TARGET_SIZE,
    accepted: Sequence[str] = IMAGE_FORMATS,
) -> Header:
    """Read only the header; refuse non-images, other formats and images too large to decode.

    ``row`` names the offending input in the message (a row number or a file name). Limits: the
    ceiling :data:`MAX_IMAGE_PIXELS` on the declared size, then the decode cost against
    ``max_pixels`` full-size pixels when given (e.g. the app's configured limit) and against this
    process's memory (:func:`decode_budget`), whichever is lower. ``target_size`` is the model's
    input size (JPEG draft scale); ``accepted`` the formats the caller offers (and names).
    """
    where = input_name(row)
    header = _declared_header(raw, where, target_size, accepted)
    ceiling = _check_declared_size(header, where, max_pixels)
    _check_decode_cost(header, where, max_pixels, ceiling)
    return header


def _declared_header(raw: bytes, where: str, target_size: int, accepted: Sequence[str]) -> Header:
    """What the bytes declare; refuses empty input, unknown, unreadable or unaccepted formats."""
    if not raw:
        raise InvalidImageError(f"{where}: empty (0 bytes)")
    fmt = sniff_format(raw)
    if fmt is None:
        raise _unknown_format(raw, where, accepted)
    width, height, progressive = _parse_header(raw, fmt, where, accepted)
    if fmt not in accepted:
        raise InvalidImageError(f"{where}: {fmt} images are not accepted; use {formats_text(accepted)}")
    if min(width, height) < 1:
        raise InvalidImageError(f"{where}: image has no pixels ({width}x{height})")
    jpeg = fmt == "JPEG"
    return Header(
        fmt, width, height, draft_scale(width, height, target_size) if jpeg else 1, progressive and jpeg
    )


def _parse_header(raw: bytes, fmt: str, where: str, accepted: Sequence[str]) -> tuple[int, int, bool]:
    """(width, height, progressive) as the header of ``fmt`` declares them, PIL's errors made ours."""
    try:
        img = open_header(raw, fmt)
        width, height = img.size
        progressive = bool(img.info.get("progressive") or img.info.get("progression"))
    except Image.DecompressionBombError:  # a GIF frame larger than its declared screen
        raise InvalidImageError(
            f"{where}: a GIF frame declares more than {MAX_IMAGE_PIXELS:,} pixels, the limit "
            "(refused before decoding: possible decompression bomb)"
        ) from None
    except (UnidentifiedImageError, SyntaxError, OSError, ValueError, struct.error) as exc:
        raise _unreadable(where, raw, accepted) from exc
    return width, height, progressive


def _check_declared_size(header: Header, where: str, max_pixels: int | None) -> int:
    """Refuse a declared size over the ceiling (a possible bomb); returns the ceiling in force."""
    ceiling = MAX_IMAGE_PIXELS if max_pixels is None else min(MAX_IMAGE_PIXELS, int(max_pixels))
    if header.pixels > MAX_IMAGE_PIXELS or (header.draft_scale == 1 and header.pixels > ceiling):
        raise InvalidImageError(
            f"{where}: {header.width}x{header.height} = {header.pixels:,} pixels exceeds the limit of "
            f"{ceiling:,} pixels (refused before decoding: possible decompression bomb)"
        )
    return ceiling


def _check_decode_cost(header: Header, where: str, max_pixels: int | None, ceiling: int) -> None:
    """Refuse an image whose decode would cost more than this process's budget (or ``max_pixels``)."""
    budget = decode_budget()
    allowed = budget.bytes_per_decode
    if max_pixels is not None:
        allowed = min(allowed, int(max_pixels) * DECODE_BYTES_PER_PIXEL)
    if header.decode_bytes <= allowed:
        return
    mib = header.decode_bytes / 2**20
    how = (
        "it is decoded at full size"
        if header.draft_scale == 1
        else f"even decoded at 1/{header.draft_scale} scale it needs {mib:,.0f} MiB"
    )
    limit = min(ceiling, allowed // DECODE_BYTES_PER_PIXEL)
    raise InvalidImageError(
        f"{where}: {header.width}x{header.height} = {header.pixels:,} pixels exceeds the limit of "
        f"{limit:,} pixels this server can decode ({header.format}: {how}; memory: {budget.describe()})"
    )


def _unreadable(where: str, raw: bytes, accepted: Sequence[str]) -> InvalidImageError:
    return InvalidImageError(
        f"{where}: not a readable image ({len(raw)} bytes); expected {formats_text(accepted)}"
    )


def _unknown_format(raw: bytes, where: str, accepted: Sequence[str]) -> InvalidImageError:
    """The error for bytes that are none of the four formats: name the format when PIL knows it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as img:
                fmt = img.format or ""
    except Image.DecompressionBombError:
        fmt = "an unsupported format of"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return _unreadable(where, raw, accepted)
    if fmt in IMAGE_FORMATS:  # e.g. a BMP variant the magic-number sniffing does not know
        fmt = f"this {fmt} variant"
    return InvalidImageError(
        f"{where}: {fmt or 'unknown'} images are not accepted; use {formats_text(accepted)}"
    )


def check_encoded(
    raw: bytes,
    row: int | str = 0,
    max_pixels: int | None = None,
    *,
    accepted: Sequence[str] = IMAGE_FORMATS,
) -> tuple[str, int, int]:
    """Read only the header: (format, width, height); refuse non-images, odd formats and bombs.

    See :func:`read_header` for the limits; ``row`` names the offending input in the message.
    """
    header = read_header(raw, row, max_pixels, accepted=accepted)
    return header.format, header.width, header.height
