"""What the served model accepts, and turning it into the batch of pixels the network takes.

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

Untrusted input is vetted before any pixel is decoded, in the serving modules that each do one
part: the accepted formats (:mod:`~melanoma_mlops.serving.formats`), the header and its size
limits (:mod:`~melanoma_mlops.serving.headers`), the memory this process can spend on decoding
(:mod:`~melanoma_mlops.serving.memory_budget`) and the decode itself
(:mod:`~melanoma_mlops.serving.decoding`). The CLI's ``predict``, the app and the served pyfunc
all vet input through them.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from melanoma_mlops.serving.admission import check_deadline
from melanoma_mlops.serving.decoding import decode_encoded, training_pixels
from melanoma_mlops.serving.errors import InvalidImageError, input_name
from melanoma_mlops.serving.formats import sniff_format
from melanoma_mlops.serving.headers import read_header
from melanoma_mlops.serving.memory_budget import MAX_IMAGE_PIXELS

IMAGE_COLUMN = "image"
#: Rows vetted between two looks at the request's deadline.
DEADLINE_EVERY = 256

_DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(rb"\s+")


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


def check_array(value: np.ndarray, row: int | str = 0, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """A uint8 (H, W, 3) RGB view of an image array; grey and RGBA are converted, the rest refused.

    Only uint8 is accepted: a float array could be in [0, 1] or [0, 255] and guessing wrong would
    silently produce confident nonsense.
    """
    arr = np.asarray(value)
    if arr.dtype != np.uint8:
        raise InvalidImageError(
            f"{input_name(row)}: image arrays must be uint8 RGB in [0, 255], not {arr.dtype}"
        )
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise InvalidImageError(
            f"{input_name(row)}: image arrays must be (H, W, 3) RGB; got shape {arr.shape}"
        )
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    elif arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.shape[0] < 1 or arr.shape[1] < 1 or arr.shape[0] * arr.shape[1] > max_pixels:
        raise InvalidImageError(f"{input_name(row)}: image array of shape {arr.shape} is empty or too large")
    return arr


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


def vetted(model_input: Any, image_size: int) -> list[bytes | np.ndarray] | np.ndarray:
    """Every row of an accepted input, vetted and not yet decoded: encoded bytes whose headers
    passed (:func:`read_header`) or uint8 arrays; a 4-D uint8 batch is returned as it is.

    A bad row fails the request before any pixel is decoded. Between rows the current request's
    deadline is checked (:func:`~melanoma_mlops.serving.admission.check_deadline`).
    """
    if isinstance(model_input, np.ndarray) and model_input.ndim == 4:
        if model_input.dtype != np.uint8 or model_input.shape[-1] != 3:
            raise InvalidImageError(
                f"a 4-D input must be (N, H, W, 3) uint8 RGB; got {model_input.dtype} {model_input.shape}"
            )
        return model_input
    values = _column_values(model_input)
    items = []
    for i, value in enumerate(values):
        if i % DEADLINE_EVERY == 0:
            check_deadline("vetting the request's images")
        item = _as_encoded_or_array(value, i)
        if not isinstance(item, np.ndarray):
            read_header(item, i, target_size=image_size)
        items.append(item)
    return items


def decoded(
    items: Sequence[bytes | np.ndarray] | np.ndarray, image_size: int, first_row: int = 0
) -> np.ndarray:
    """The float32 batch (N, size, size, 3) in [0, 255] the network takes, from vetted rows."""
    from melanoma_mlops.model.dataset import resize

    if len(items) == 0:
        return np.zeros((0, image_size, image_size, 3), np.float32)
    if isinstance(items, np.ndarray) and items.ndim == 4:
        return training_pixels(resize(items, image_size)).numpy()
    batch = []
    for i, item in enumerate(items, start=first_row):
        if isinstance(item, np.ndarray):
            batch.append(training_pixels(resize(item, image_size)).numpy())
        else:
            batch.append(decode_encoded(item, i, image_size))
    return np.stack(batch)


def images_from_input(model_input: Any, image_size: int) -> np.ndarray:
    """Decode any accepted input into the float32 batch (N, size, size, 3) in [0, 255] the network takes.

    All rows at once: for a caller that holds few images (the app, ``predict``); the served pyfunc
    decodes and scores them a chunk at a time instead.
    """
    return decoded(vetted(model_input, image_size), image_size)


def to_model_input(images: np.ndarray | Sequence[bytes | str | np.ndarray]) -> pd.DataFrame:
    """The DataFrame the pyfunc takes, from a 4-D uint8 batch or a list of bytes/base64/arrays."""
    # list() of a 4-D array yields its (H, W, 3) images: one per row, as the column expects.
    return pd.DataFrame({IMAGE_COLUMN: list(images)})
