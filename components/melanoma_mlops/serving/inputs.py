"""What the served model accepts, and the one place untrusted image input is vetted and decoded.

A model that needs its caller to resize or normalise images is a model that will one day be fed
the wrong pixels, so the registered pyfunc takes what a caller naturally has and does the rest:

* a DataFrame with an ``image`` column holding, per row, encoded JPEG/PNG/BMP/GIF bytes; the
  same bytes as base64 text (optionally a ``data:image/...;base64,`` URL); or an HxWx3 uint8 RGB
  array (HxW grey and HxWx4 RGBA arrays are converted);
* a dict ``{"image": [...]}`` of the same values;
* a 4-D ``(N, H, W, 3)`` uint8 array, when the classifier is called directly
  (``loaded.unwrap_python_model().predict(None, batch)``) or through :func:`to_model_input`.
  ``mlflow.pyfunc`` itself refuses n-d arrays for a column signature before ``predict`` runs.

Over HTTP (``mlflow models serve``) the signature's ``binary`` column makes MLflow 3's scoring
server base64-decode ``dataframe_split`` / ``dataframe_records`` values itself; with the
``inputs`` / ``instances`` formats it hands the base64 *text* over as UTF-8 bytes instead, so
bytes that are not an image but decode from base64 into one are accepted as well.

Headers are checked before any pixel is decoded (format, dimensions: a few kB of PNG can declare
gigapixels), read by this module itself so that PIL's own decompression-bomb error never reaches a
user. Memory is bounded three ways: an absolute ceiling (:data:`MAX_IMAGE_PIXELS`); a limit derived
from the memory this process may use (its cgroup's ``memory.max`` / ``memory.limit_in_bytes``, else
the machine's RAM), what it already holds and what one decode costs (:func:`pixel_limit`); and
:data:`DECODE_SLOTS` decodes at a time per process (:func:`images_from_input` holds a semaphore
around each decode, so a burst of requests to ``mlflow models serve`` queues instead of decoding
side by side).

Pixels are computed exactly as in training (:func:`melanoma_mlops.model.dataset.decode_resize`,
then the uint8 truncation of the training input pipeline), so serving sees what evaluation saw -
with one exception, for memory: a JPEG at least :data:`DRAFT_MARGIN` times larger than the model
input (2x, 4x or 8x) is decoded by libjpeg at that reduced scale (PIL's draft mode) and then
resized as in training. A 6000x4000 JPEG then costs ~25 MB instead of ~370 MB; the pixels differ
from the full-size path by about one grey level on average (tests/test_serving.py measures it).
PNG, BMP and GIF have no reduced-scale decoding, so their full size counts against the limit.
The CLI's ``predict``, the app and the served pyfunc all vet input here.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import logging
import math
import os
import re
import struct
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from PIL import (
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    ImageFile,
    JpegImagePlugin,
    PngImagePlugin,
    UnidentifiedImageError,
)

from melanoma_mlops.errors import DataError

logger = logging.getLogger(__name__)

IMAGE_COLUMN = "image"
#: Encoded formats the training decoder (tf.io.decode_image) reads and the contract promises.
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "GIF")
#: File extensions of each format (the CLI's folder search, the app's uploader).
FORMAT_SUFFIXES = {"JPEG": (".jpg", ".jpeg"), "PNG": (".png",), "BMP": (".bmp",), "GIF": (".gif",)}
IMAGE_SUFFIXES = tuple(suffix for fmt in IMAGE_FORMATS for suffix in FORMAT_SUFFIXES[fmt])
#: Images above this many pixels are refused from their header, whatever the memory: a few kB of
#: PNG can expand to gigabytes (a decompression bomb). 100 MP is ~4x a large dermatoscope image.
MAX_IMAGE_PIXELS = 100_000_000
#: Peak bytes per pixel of the training decode path (tf decode 3 B + float32 copy 12 B + resize),
#: measured on a 99-MP PNG: +1530 MiB. PNG, BMP, GIF and JPEGs too small to draft cost this.
DECODE_BYTES_PER_PIXEL = 16
#: Bytes per pixel *of the reduced image* on the JPEG draft path (PIL decode 3 B, RGB 3 B, resize 16 B).
DRAFT_BYTES_PER_PIXEL = 22
#: A progressive JPEG keeps its DCT coefficients for the whole image while decoding, even at
#: reduced scale: up to 2 bytes x 3 components per declared pixel (measured: 99 MP 4:2:0, +292 MiB).
PROGRESSIVE_BYTES_PER_PIXEL = 6
#: Share of the memory left after what the process already holds that decoding may use; the
#: rest is headroom for inference, Grad-CAM and the server itself.
DECODE_MEMORY_FRACTION = 0.5
#: Concurrent decodes per process (a semaphore); more requests wait their turn.
DECODE_SLOTS = 1
#: A drafted JPEG keeps at least this many times the model's input size on its shorter side.
DRAFT_MARGIN = 4
#: The largest model input the header check assumes when it does not know the model (ResNet50).
DEFAULT_TARGET_SIZE = 224
_UNLIMITED = 1 << 60  # cgroup files say "max" (v2) or a number near 2^63 (v1) for "no limit"
#: At most DECODE_SLOTS decodes at a time in this process (threads of a scoring server, sessions
#: of the app): the memory budget below is per decode.
_decode_slots = threading.BoundedSemaphore(DECODE_SLOTS)

_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"))
_DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(rb"\s+")


class InvalidImageError(DataError, MlflowException):
    """An input row is not an image the model accepts.

    A :class:`DataError` for Python callers and the CLI, and an ``MlflowException`` with
    ``INVALID_PARAMETER_VALUE`` so that ``mlflow models serve`` answers HTTP 400 with this message
    instead of a generic 'unexpected error' that hides it in a stack trace.

    MLflow's scoring server rewrites the message of any MlflowException raised by ``predict`` to
    ``f"Failed to predict data '{data}'. Error: {message}"`` - the repr of the whole input
    DataFrame, i.e. the caller's image bytes, echoed in the 400 body. ``message`` is therefore
    fixed at construction: later assignments are ignored, and the body carries our text only.
    """

    def __init__(self, message: str) -> None:
        MlflowException.__init__(self, message, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._message

    @message.setter
    def message(self, value: str) -> None:
        if not hasattr(self, "_message"):
            self._message = value


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


def _b64decode(text: bytes) -> bytes | None:
    """Strict base64 (whitespace and MIME line breaks allowed), or None if it is not base64."""
    try:
        return base64.b64decode(_WHITESPACE.sub(b"", text), validate=True)
    except (binascii.Error, ValueError):
        return None


def _as_encoded_or_array(value: Any, row: int) -> bytes | np.ndarray:
    """Normalise one cell of the ``image`` column to encoded bytes or a uint8 array."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "SU" and value.ndim == 0:
        value = value.item()  # a 0-d string array from JSON parsing
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        if sniff_format(raw) is not None:
            return raw
        decoded = _b64decode(raw)
        if decoded is not None and sniff_format(decoded) is not None:
            return decoded  # base64 text delivered as bytes (the `inputs`/`instances` JSON formats)
        return raw  # let check_encoded say what is wrong with it
    if isinstance(value, str):
        text = _DATA_URL.sub("", value.strip(), count=1)
        decoded = _b64decode(text.encode("ascii", errors="replace"))
        if decoded is None:
            raise InvalidImageError(f"row {row}: 'image' is text but not valid base64 of an image")
        return decoded
    if isinstance(value, np.ndarray):
        return check_array(value, row)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        raise InvalidImageError(f"row {row}: 'image' is empty")
    raise InvalidImageError(
        f"row {row}: 'image' must be encoded image bytes, base64 text or a uint8 RGB array, "
        f"not {type(value).__name__}"
    )


# ---------------------------------------------------------------------------------------------
# memory: how many pixels this process can afford to decode
# ---------------------------------------------------------------------------------------------


def _read_limit(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max" or not text.isdigit():
        return None
    value = int(text)
    return value if 0 < value < _UNLIMITED else None


def cgroup_memory_limit(
    cgroup_root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")
) -> int | None:
    """The tightest memory limit of this process's cgroup and its ancestors, or None.

    cgroup v2: ``memory.max`` along the unified path (``0::/path``). cgroup v1 (or the hybrid
    layout): ``memory.limit_in_bytes`` along the memory controller's path. In a container the
    path is usually ``/`` and the files at the mount's root are the container's own.
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    candidates: list[Path] = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        rel = path.strip().lstrip("/")
        if hierarchy == "0" and controllers == "":
            base, name = cgroup_root, "memory.max"
        elif "memory" in controllers.split(","):
            base, name = cgroup_root / "memory", "memory.limit_in_bytes"
        else:
            continue
        here = base / rel if rel else base
        while True:
            candidates.append(here / name)
            if here == base:
                break
            here = here.parent
    limits = [v for v in map(_read_limit, candidates) if v is not None]
    return min(limits) if limits else None


def physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 0


def memory_limit() -> tuple[int, str]:
    """(bytes, where the number comes from): the cgroup limit, else the machine's RAM."""
    physical = physical_memory()
    cgroup = cgroup_memory_limit()
    if cgroup is not None and (not physical or cgroup <= physical):
        return cgroup, "its cgroup memory limit"
    return physical, "the machine's memory"


def resident_bytes() -> int:
    """This process's resident memory now (0 where /proc is not there)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * int(os.sysconf("SC_PAGE_SIZE"))


@dataclass(frozen=True)
class DecodeBudget:
    """Bytes one decode may use, and why: what :func:`pixel_limit` is made of."""

    bytes_per_decode: int
    memory: int
    source: str

    @property
    def pixels(self) -> int:
        """Full-size decodes (PNG, BMP, GIF) that fit, capped by :data:`MAX_IMAGE_PIXELS`."""
        return min(MAX_IMAGE_PIXELS, self.bytes_per_decode // DECODE_BYTES_PER_PIXEL)

    def describe(self) -> str:
        return f"{self.source}, {self.memory / 2**30:.1f} GiB"


def compute_budget(memory: int, source: str, resident: int, slots: int = DECODE_SLOTS) -> DecodeBudget:
    free = max(memory - resident, 0)
    return DecodeBudget(int(free * DECODE_MEMORY_FRACTION / max(slots, 1)), memory, source)


_budget_lock = threading.Lock()
_budget: dict[str, DecodeBudget] = {}  # "current": the budget in force (computed on first use)


def decode_budget(refresh: bool = False) -> DecodeBudget:
    """This process's decode budget, computed once (again with ``refresh``).

    Whoever loads a model refreshes it afterwards (the pyfunc's ``load_context``, the app), so
    the memory the model holds is not counted as available for decoding.
    """
    with _budget_lock:
        if "current" not in _budget or refresh:
            memory, source = memory_limit()
            budget = _budget["current"] = compute_budget(memory, source, resident_bytes())
            logger.debug(
                "decode budget: %.0f MiB per decode (%d slot(s); %s)",
                budget.bytes_per_decode / 2**20,
                DECODE_SLOTS,
                budget.describe(),
            )
        return _budget["current"]


def pixel_limit(refresh: bool = False) -> int:
    """Pixels of a full-size decode this process can afford (at most :data:`MAX_IMAGE_PIXELS`)."""
    return decode_budget(refresh).pixels


# ---------------------------------------------------------------------------------------------
# headers
# ---------------------------------------------------------------------------------------------

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


def _open_header(raw: bytes, fmt: str) -> ImageFile.ImageFile:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return _PLUGINS[fmt](io.BytesIO(raw))


def open_image(raw: bytes, row: int | str = 0) -> ImageFile.ImageFile:
    """A lazily decoded PIL image of vetted bytes (header parsed; decode it inside :func:`decode_slot`)."""
    fmt = sniff_format(raw)
    if fmt is None:
        raise _unknown_format(raw, _where(row), IMAGE_FORMATS)
    return _open_header(raw, fmt)


@contextlib.contextmanager
def decode_slot() -> Iterator[None]:
    """Hold one of the process's DECODE_SLOTS while decoding pixels (not reentrant)."""
    with _decode_slots:
        yield


def _unreadable(where: str, raw: bytes, accepted: Sequence[str]) -> InvalidImageError:
    return InvalidImageError(
        f"{where}: not a readable image ({len(raw)} bytes); expected {formats_text(accepted)}"
    )


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
    where = _where(row)
    if not raw:
        raise InvalidImageError(f"{where}: empty (0 bytes)")
    fmt = sniff_format(raw)
    if fmt is None:
        raise _unknown_format(raw, where, accepted)
    try:
        img = _open_header(raw, fmt)
        width, height = img.size
        progressive = bool(img.info.get("progressive") or img.info.get("progression"))
    except Image.DecompressionBombError:  # a GIF frame larger than its declared screen
        raise InvalidImageError(
            f"{where}: a GIF frame declares more than {MAX_IMAGE_PIXELS:,} pixels, the limit "
            "(refused before decoding: possible decompression bomb)"
        ) from None
    except (UnidentifiedImageError, SyntaxError, OSError, ValueError, struct.error) as exc:
        raise _unreadable(where, raw, accepted) from exc
    if fmt not in accepted:
        raise InvalidImageError(f"{where}: {fmt} images are not accepted; use {formats_text(accepted)}")
    if min(width, height) < 1:
        raise InvalidImageError(f"{where}: image has no pixels ({width}x{height})")
    header = Header(
        fmt,
        width,
        height,
        draft_scale(width, height, target_size) if fmt == "JPEG" else 1,
        progressive and fmt == "JPEG",
    )
    ceiling = MAX_IMAGE_PIXELS if max_pixels is None else min(MAX_IMAGE_PIXELS, int(max_pixels))
    if header.pixels > MAX_IMAGE_PIXELS or (header.draft_scale == 1 and header.pixels > ceiling):
        raise InvalidImageError(
            f"{where}: {width}x{height} = {header.pixels:,} pixels exceeds the limit of {ceiling:,} pixels "
            "(refused before decoding: possible decompression bomb)"
        )
    budget = decode_budget()
    allowed = budget.bytes_per_decode
    if max_pixels is not None:
        allowed = min(allowed, int(max_pixels) * DECODE_BYTES_PER_PIXEL)
    if header.decode_bytes > allowed:
        mib = header.decode_bytes / 2**20
        how = (
            "it is decoded at full size"
            if header.draft_scale == 1
            else f"even decoded at 1/{header.draft_scale} scale it needs {mib:,.0f} MiB"
        )
        limit = min(ceiling, allowed // DECODE_BYTES_PER_PIXEL)
        raise InvalidImageError(
            f"{where}: {width}x{height} = {header.pixels:,} pixels exceeds the limit of {limit:,} pixels "
            f"this server can decode ({fmt}: {how}; memory: {budget.describe()})"
        )
    return header


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


def check_array(value: np.ndarray, row: int | str = 0, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """A uint8 (H, W, 3) RGB view of an image array; grey and RGBA are converted, the rest refused.

    Only uint8 is accepted: a float array could be in [0, 1] or [0, 255] and guessing wrong would
    silently produce confident nonsense.
    """
    arr = np.asarray(value)
    if arr.dtype != np.uint8:
        raise InvalidImageError(f"{_where(row)}: image arrays must be uint8 RGB in [0, 255], not {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise InvalidImageError(f"{_where(row)}: image arrays must be (H, W, 3) RGB; got shape {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    elif arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.shape[0] < 1 or arr.shape[1] < 1 or arr.shape[0] * arr.shape[1] > max_pixels:
        raise InvalidImageError(f"{_where(row)}: image array of shape {arr.shape} is empty or too large")
    return arr


def _where(row: int | str) -> str:
    return f"row {row}" if isinstance(row, int) else str(row)


def _column_values(model_input: Any) -> list[Any]:
    if isinstance(model_input, pd.DataFrame):
        if IMAGE_COLUMN not in model_input.columns:
            raise InvalidImageError(
                f"input needs an '{IMAGE_COLUMN}' column; got columns {list(model_input.columns)}"
            )
        return model_input[IMAGE_COLUMN].tolist()
    if isinstance(model_input, dict) and IMAGE_COLUMN in model_input:
        values = model_input[IMAGE_COLUMN]
        return list(values) if isinstance(values, list | tuple | np.ndarray | pd.Series) else [values]
    raise InvalidImageError(
        f"input must be a DataFrame with an '{IMAGE_COLUMN}' column or an (N, H, W, 3) uint8 array; "
        f"got {type(model_input).__name__}"
    )


def _training_pixels(images: Any) -> Any:
    """The uint8 truncation the training input pipeline applies (dataset.make_dataset) after resizing."""
    import tensorflow as tf

    return tf.cast(tf.cast(images, tf.uint8), tf.float32)


def decode_encoded(raw: bytes, row: int | str, image_size: int) -> np.ndarray:
    """Vet, then decode one encoded image into float32 (size, size, 3) pixels, one decode at a time."""
    import tensorflow as tf

    from melanoma_mlops.model.dataset import decode_resize, resize

    header = read_header(raw, row, target_size=image_size)
    with decode_slot():
        if header.draft_scale > 1:
            try:
                img = _open_header(raw, "JPEG")
                request = DRAFT_MARGIN * image_size
                img.draft("RGB", (request, request))
                array = np.asarray(img.convert("RGB"))
                del img
            except (OSError, ValueError, SyntaxError) as exc:
                raise InvalidImageError(
                    f"{_where(row)}: the image data is corrupt and cannot be decoded"
                ) from exc
            pixels = resize(array, image_size)
        else:
            try:
                pixels = decode_resize(tf.constant(raw), image_size)
            except tf.errors.InvalidArgumentError as exc:
                raise InvalidImageError(
                    f"{_where(row)}: the image data is corrupt and cannot be decoded"
                ) from exc
        return _training_pixels(pixels).numpy()


def images_from_input(model_input: Any, image_size: int) -> np.ndarray:
    """Decode any accepted input into the float32 batch (N, size, size, 3) in [0, 255] the network takes."""
    from melanoma_mlops.model.dataset import resize

    if isinstance(model_input, np.ndarray) and model_input.ndim == 4:
        if model_input.dtype != np.uint8 or model_input.shape[-1] != 3:
            raise InvalidImageError(
                f"a 4-D input must be (N, H, W, 3) uint8 RGB; got {model_input.dtype} {model_input.shape}"
            )
        if len(model_input) == 0:
            return np.zeros((0, image_size, image_size, 3), np.float32)
        return _training_pixels(resize(model_input, image_size)).numpy()
    values = _column_values(model_input)
    # Vet every row's header first: a bad row fails the request before any pixel is decoded.
    items = [_as_encoded_or_array(value, i) for i, value in enumerate(values)]
    for i, item in enumerate(items):
        if not isinstance(item, np.ndarray):
            read_header(item, i, target_size=image_size)
    batch = []
    for i, item in enumerate(items):
        if isinstance(item, np.ndarray):
            batch.append(_training_pixels(resize(item, image_size)).numpy())
        else:
            batch.append(decode_encoded(item, i, image_size))
    return np.stack(batch) if batch else np.zeros((0, image_size, image_size, 3), np.float32)


def to_model_input(images: np.ndarray | Sequence[bytes | str | np.ndarray]) -> pd.DataFrame:
    """The DataFrame the pyfunc takes, from a 4-D uint8 batch or a list of bytes/base64/arrays."""
    # list() of a 4-D array yields its (H, W, 3) images: one per row, as the column expects.
    return pd.DataFrame({IMAGE_COLUMN: list(images)})
