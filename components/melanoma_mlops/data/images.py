"""Opening every image once during validation: existence, decodability, size, mode, hashes.

Images are streamed one at a time (never all in memory) and inspected in a thread pool: file
reads, hashing and PIL decoding release the GIL, so threads scale on I/O-bound object stores.

Memory is bounded before anything is decoded (:mod:`melanoma_mlops.limits`): the header gives the
size; JPEGs are decoded in draft mode (at 1/2, 1/4 or 1/8 scale: the perceptual hash needs 64 px);
an image whose decode would exceed this process's pixel limit is reported, not decoded; and the
threads share one pixel budget, so sixteen large images never decode at once.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from PIL import Image, UnidentifiedImageError

from melanoma_mlops import limits, storage
from melanoma_mlops.data.hashing import perceptual_hash
from melanoma_mlops.errors import DataError

logger = logging.getLogger(__name__)

# What tf.io.decode_image (the training decoder) reads. TIFF opens in PIL but not in training.
DECODABLE_FORMATS = frozenset({"JPEG", "PNG", "BMP", "GIF"})
ACCEPTED_MODES = frozenset({"RGB", "RGBA", "L", "LA", "P"})
#: Seconds between progress lines while images are inspected.
PROGRESS_EVERY_S = 10.0
#: The side the perceptual hash needs; JPEG draft decoding stops at the smallest scale above it.
HASH_SIDE = 64
_budget: limits.PixelBudget | None = None


def pixel_budget() -> limits.PixelBudget:
    """The budget every inspecting thread of this process shares (made on first use)."""
    global _budget  # noqa: PLW0603 - one budget per process, created lazily
    if _budget is None:
        _budget = limits.PixelBudget()
    return _budget


def max_file_bytes() -> int:
    """The largest image file read whole into memory (the same share as the pixel limit)."""
    return int(limits.memory_limit_bytes() * limits.DEFAULT_SHARE)


def printable(uri: str) -> str:
    """A path safe to print, write to CSV and log: undecodable bytes as ``\\xNN``."""
    try:
        uri.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(uri).decode("utf-8", "backslashreplace")
    return uri


@dataclass(frozen=True)
class ImageInfo:
    image_uri: str
    sha256: str = ""
    phash: str = ""
    width: int = 0
    height: int = 0
    format: str = ""
    mode: str = ""
    bytes: int = 0
    error: str | None = None


def inspect(uri: str, budget: limits.PixelBudget | None = None) -> ImageInfo:
    """Read one image and report what is wrong with it, if anything (never raises for bad files)."""
    budget = budget or pixel_budget()
    try:
        size = os.path.getsize(uri) if storage.is_local(uri) else None
        if size is not None and size > max_file_bytes():
            return ImageInfo(
                uri,
                bytes=size,
                error=f"refused: the file is {size / 2**20:.0f} MiB, more than the "
                f"{max_file_bytes() / 2**20:.0f} MiB one image may take in this process",
            )
        data = storage.read_bytes(uri)
    except DataError as exc:
        return ImageInfo(uri, error=f"unreadable: {exc}")
    except FileNotFoundError:
        return ImageInfo(uri, error="missing: the file does not exist")
    except OSError as exc:
        return ImageInfo(uri, error=f"unreadable: {exc.strerror or exc}")
    sha = hashlib.sha256(data).hexdigest()
    if not data:
        return ImageInfo(uri, sha256=sha, error="empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, mode, (width, height) = img.format or "", img.mode, img.size
            img.draft("RGB", (HASH_SIDE, HASH_SIDE))  # JPEG: decode at 1/2..1/8 scale; others: no-op
            decoded = img.size[0] * img.size[1]
            if decoded > budget.total:
                return ImageInfo(
                    uri,
                    sha256=sha,
                    width=width,
                    height=height,
                    format=fmt,
                    mode=mode,
                    bytes=len(data),
                    error=f"too large to decode: {width}x{height} ({limits.describe(width * height)}) "
                    f"needs {limits.describe(decoded)} decoded, more than the "
                    f"{limits.describe(budget.total)} this process may hold; downscale it",
                )
            with budget.reserve(decoded):
                img.load()
                phash = perceptual_hash(img)
    except UnidentifiedImageError:
        return ImageInfo(
            uri, sha256=sha, bytes=len(data), error="not an image: no known image format in the file"
        )
    except Image.DecompressionBombError as exc:
        return ImageInfo(uri, sha256=sha, bytes=len(data), error=f"refused as a decompression bomb: {exc}")
    except (OSError, SyntaxError, ValueError) as exc:
        return ImageInfo(uri, sha256=sha, bytes=len(data), error=f"corrupt or truncated image: {exc}")
    info = ImageInfo(uri, sha, phash, width, height, fmt, mode, len(data))
    if fmt not in DECODABLE_FORMATS:
        return ImageInfo(
            **{**asdict(info), "error": f"format {fmt} cannot be decoded in training; convert to PNG or JPEG"}
        )
    return info


def inspect_all(uris: Iterable[str], total: int, workers: int | None = None) -> Iterator[ImageInfo]:
    """Inspect images in parallel, in input order, logging progress every 10% (at most every 10 s)."""
    workers = workers or min(16, 4 * (os.cpu_count() or 1))
    step = max(1, total // 10)
    last = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, info in enumerate(pool.map(inspect, uris, chunksize=32 if total > 1000 else 1), start=1):
            if i == total or (i % step == 0 and time.monotonic() - last >= PROGRESS_EVERY_S):
                last = time.monotonic()
                logger.info("validated %d/%d images (%.0f%%)", i, total, 100 * i / max(total, 1))
            yield info
