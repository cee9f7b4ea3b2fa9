"""The registered model: an MLflow pyfunc that takes raw images and owns all preprocessing.

Input: a DataFrame with an ``image`` column holding encoded image bytes (JPEG/PNG/BMP/GIF), the
same bytes base64-encoded as a string (what JSON requests carry), or an HxWx3 uint8 array.
Output: one row per image with ``probability`` (of malignancy), ``label`` (1 = malignant at the
frozen threshold) and ``class_name``. Images are decoded and resized by
:func:`melanoma_mlops.dataset.decode_resize`, exactly as in training.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from .errors import DataError

logger = logging.getLogger(__name__)

KERAS_ARTIFACT = "keras_model"
CONTRACT_ARTIFACT = "contract"


def _to_bytes(value: Any, row: int) -> bytes | np.ndarray:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise DataError(f"row {row}: 'image' is a string but not valid base64 ({exc})") from exc
    raise DataError(
        f"row {row}: 'image' must be bytes, base64 text or a uint8 array, not {type(value).__name__}"
    )


def images_from_input(model_input: Any, image_size: int) -> np.ndarray:
    """Decode any accepted input into a float32 batch (N, size, size, 3) in [0, 255]."""
    import tensorflow as tf

    from .dataset import decode_resize, resize

    if isinstance(model_input, np.ndarray) and model_input.ndim == 4:
        return resize(model_input, image_size).numpy()
    if isinstance(model_input, pd.DataFrame):
        if "image" not in model_input.columns:
            raise DataError(f"input needs an 'image' column; got columns {list(model_input.columns)}")
        values = model_input["image"].tolist()
    elif isinstance(model_input, dict) and "image" in model_input:
        values = list(model_input["image"])
    else:
        raise DataError("input must be a DataFrame with an 'image' column or an (N, H, W, 3) uint8 array")
    batch = []
    for i, value in enumerate(values):
        raw = _to_bytes(value, i)
        try:
            if isinstance(raw, np.ndarray):
                batch.append(resize(raw, image_size).numpy())
            else:
                batch.append(decode_resize(tf.constant(raw), image_size).numpy())
        except tf.errors.InvalidArgumentError as exc:
            raise DataError(
                f"row {i}: not a decodable JPEG/PNG/BMP/GIF image ({exc.message.splitlines()[0]})"
            ) from exc
    return np.stack(batch) if batch else np.zeros((0, image_size, image_size, 3), np.float32)


class MelanomaClassifier(mlflow.pyfunc.PythonModel):
    """Raw image in, malignancy probability and thresholded label out."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        import keras

        from . import model as _model  # registers the custom preprocessing layer

        self.model = keras.models.load_model(
            context.artifacts[KERAS_ARTIFACT],
            compile=False,
            custom_objects={
                "ResNetPreprocess": _model.ResNetPreprocess,
            },
        )
        with open(context.artifacts[CONTRACT_ARTIFACT]) as fh:
            self.contract = json.load(fh)

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        size = int(self.contract["input"]["image_size"])
        threshold = float(self.contract["threshold"])
        batch = images_from_input(model_input, size)
        probs = self.model.predict(batch, verbose=0).ravel().astype(float) if len(batch) else np.zeros(0)
        labels = (probs >= threshold).astype(int)
        return pd.DataFrame(
            {
                "probability": probs,
                "label": labels,
                "class_name": np.where(labels == 1, "malignant", "benign"),
            }
        )
