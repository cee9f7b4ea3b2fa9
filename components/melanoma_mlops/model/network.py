"""The classifier: ResNet50 base + global-average-pooling -> dropout -> dense(1, sigmoid) head.

Built functionally with the base as one nested layer named ``resnet50`` so that Stage 1 can
freeze it, Stage 2 can unfreeze it, and Grad-CAM can split the model at the base's last
convolutional feature map (the base's output, since it is built without its top).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import keras
from keras import layers

from melanoma_mlops import preflight, storage
from melanoma_mlops.errors import WeightsError

logger = logging.getLogger(__name__)

BASE_NAME = "resnet50"
HEAD_LAYERS = ("gap", "dropout", "malignancy")
# ResNet50's "caffe" preprocessing: RGB->BGR and ImageNet channel means subtracted, no scaling.
_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="melanoma")
class ResNetPreprocess(layers.Layer):
    """keras.applications.resnet50.preprocess_input as a serialisable layer (no Lambda).

    Owning preprocessing inside the model means a saved model takes plain RGB in [0, 255].
    """

    def call(self, inputs):  # type: ignore[override]
        bgr = keras.ops.flip(inputs, axis=-1)
        return bgr - keras.ops.convert_to_tensor(_BGR_MEAN, dtype=bgr.dtype)


def resolve_weights(weights: str) -> str | None:
    """Map the ``--weights`` option to what keras.applications.ResNet50 accepts."""
    if weights.lower() == "none":
        return None
    if weights.lower() == "imagenet":
        return "imagenet"
    if storage.is_s3(weights):
        local = Path(tempfile.mkdtemp()) / Path(weights).name
        local.write_bytes(storage.read_bytes(weights))
        return str(local)
    problem = preflight.weights_problem(weights)  # the same check the run made before its first step
    if problem:
        raise WeightsError(problem)
    return weights


def build_base(image_size: int, weights: str) -> keras.Model:
    resolved = resolve_weights(weights)
    try:
        return keras.applications.ResNet50(
            include_top=False, weights=resolved, input_shape=(image_size, image_size, 3), name=BASE_NAME
        )
    except Exception as exc:  # Keras raises a bare Exception for download failures.
        if resolved == "imagenet" and "URL fetch failure" in str(exc):
            raise WeightsError(
                "could not download the ImageNet weights for ResNet50 (no network?). Either copy "
                "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 to this machine and pass "
                "--weights /path/to/that.h5 (or an s3:// URI), pre-seed ~/.keras/models/ with it, "
                "or train from scratch with --weights none."
            ) from exc
        if resolved not in (None, "imagenet"):
            raise WeightsError(f"--weights {weights!r} could not be loaded into ResNet50: {exc}") from exc
        raise


def build_classifier(image_size: int, weights: str, dropout: float) -> keras.Model:
    """ResNet50 classifier with the base frozen (the Stage 1 configuration)."""
    base = build_base(image_size, weights)
    base.trainable = False
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = ResNetPreprocess(name="preprocess")(inputs)
    x = base(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    # float32 output keeps the sigmoid numerically sound under mixed precision.
    outputs = layers.Dense(1, activation="sigmoid", name="malignancy", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="melanoma_resnet50")


def unfreeze(model: keras.Model, bn_inference: bool = True) -> None:
    """Make every layer trainable (Stage 2).

    With ``bn_inference`` the BatchNormalization layers stay frozen, which in Keras 3 also keeps
    them in inference mode: their moving statistics, learnt on large data, are not overwritten
    by small, oversampled batches (the Keras transfer-learning guide's advice).
    """
    base = model.get_layer(BASE_NAME)
    base.trainable = True
    # Set every layer explicitly: the container's setter does not reset layers frozen earlier.
    for layer in base.layers:
        layer.trainable = not (bn_inference and isinstance(layer, layers.BatchNormalization))


def load(path: str | Path) -> keras.Model:
    return keras.models.load_model(path, compile=False)
