"""Opening every image once during validation: existence, decodability, size, mode, hashes.

Images are streamed one at a time (never all in memory) and inspected in a thread pool: file
reads, hashing and PIL decoding release the GIL, so threads scale on I/O-bound object stores.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from PIL import Image, UnidentifiedImageError

from melanoma_mlops import storage
from melanoma_mlops.data.hashing import perceptual_hash
from melanoma_mlops.errors import DataError

logger = logging.getLogger(__name__)

# What tf.io.decode_image (the training decoder) reads. TIFF opens in PIL but not in training.
DECODABLE_FORMATS = frozenset({"JPEG", "PNG", "BMP", "GIF"})
ACCEPTED_MODES = frozenset({"RGB", "RGBA", "L", "LA", "P"})
# Refuse images whose pixel count could be a decompression bomb (~ 180 MP).
Image.MAX_IMAGE_PIXELS = 178_956_970


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


def inspect(uri: str) -> ImageInfo:
    """Read one image and report what is wrong with it, if anything (never raises for bad files)."""
    try:
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
            img.draft("RGB", (64, 64))  # JPEG: decode at reduced scale; the whole stream is still read
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
    """Inspect images in parallel, in input order, logging progress every 10%."""
    workers = workers or min(16, 4 * (os.cpu_count() or 1))
    step = max(1, total // 10)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, info in enumerate(pool.map(inspect, uris, chunksize=32 if total > 1000 else 1), start=1):
            if i % step == 0 or i == total:
                logger.info("validated %d/%d images (%.0f%%)", i, total, 100 * i / max(total, 1))
            yield info
