"""Decoding one vetted image into the pixels the network takes, exactly as training made them.

Pixels are computed as in training (:func:`melanoma_mlops.model.dataset.decode_resize`, then the
uint8 truncation of the training input pipeline), so serving sees what evaluation saw - with one
exception, for memory: a JPEG at least :data:`~melanoma_mlops.serving.headers.DRAFT_MARGIN` times
larger than the model input (2x, 4x or 8x) is decoded by libjpeg at that reduced scale (PIL's
draft mode) and then resized as in training. A 6000x4000 JPEG then costs ~25 MB instead of
~370 MB; the pixels differ from the full-size path by about one grey level on average
(tests/unit/test_serving.py measures it). Every decode holds one of the process's decode slots.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from melanoma_mlops.serving.errors import InvalidImageError, input_name
from melanoma_mlops.serving.headers import DRAFT_MARGIN, open_header, read_header
from melanoma_mlops.serving.memory_budget import decode_slot


def training_pixels(images: Any) -> Any:
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
                img = open_header(raw, "JPEG")
                request = DRAFT_MARGIN * image_size
                img.draft("RGB", (request, request))
                array = np.asarray(img.convert("RGB"))
                del img
            except (OSError, ValueError, SyntaxError) as exc:
                raise InvalidImageError(
                    f"{input_name(row)}: the image data is corrupt and cannot be decoded"
                ) from exc
            pixels = resize(array, image_size)
        else:
            try:
                pixels = decode_resize(tf.constant(raw), image_size)
            except tf.errors.InvalidArgumentError as exc:
                raise InvalidImageError(
                    f"{input_name(row)}: the image data is corrupt and cannot be decoded"
                ) from exc
        return training_pixels(pixels).numpy()
