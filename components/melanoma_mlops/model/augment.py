"""Training augmentation as the first layer of the *training* model, on whatever device trains.

The published augmentation (Keras ``RandomFlip("horizontal_and_vertical")``, ``RandomRotation(0.25,
fill_mode="reflect")``, ``RandomZoom(0.1, fill_mode="reflect")``, ``RandomContrast(0.1)``) used to run
per batch in the tf.data pipeline on the CPU, where it cost more per image than decoding a JPEG
(issue 14: 6.1 ms per 224-px image on a 2-core EPYC; on a GPU node ~20-30 CPU cores could not feed
the GPU). :class:`Augment` applies the same transformations with the same ranges in one pass:

* the three geometric transformations (flips, rotation by up to +-90 degrees, zoom by up to +-10%)
  are composed into *one* affine map per image and the image is resampled once (bilinear, reflect
  fill, TensorFlow's ImageProjectiveTransform rules), instead of three resamplings;
* the contrast change (factor in [0.9, 1.1] per image, around each channel's mean, clipped to
  [0, 255]) follows on the transformed image, as RandomContrast did after the other layers (its
  pivot is the channel mean of the image before the transform, which saves a pass and moves the
  output by about one grey level at most);
* the whole batch is one XLA computation (gathers + arithmetic fused), ~5x cheaper than the Keras
  layers on a CPU (benchmarks/bench_input.py) and on a GPU a few fused kernels.

Two deliberate differences from the Keras layers, both on the side of the intended augmentation:
Keras 3's ``RandomFlip("horizontal_and_vertical")`` draws *one* coin per image and flips both axes
together (a 180-degree turn, never a mirror image); here the horizontal and the vertical flip each
have their own coin, so mirror images occur as the flip's name promises (dermoscopy has no
canonical orientation or handedness). And resampling once instead of twice blurs less; where the
rotated and zoomed image reaches past the border, the fill reflects the original image rather
than the already-reflected intermediate of the previous layer.

The layer lives only in the training model (:func:`training_model`): the saved classifier, evaluation
and serving never contain it and never augment. With ``training=False`` (validation during fit)
it only converts the uint8 batch to float32. Random draws come from a Keras ``SeedGenerator`` (the
step's seed), so the same seed gives the same augmentation.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from melanoma_mlops.model import batchnorm_fold

#: Keras-equivalent ranges (RandomRotation factor 0.25 = a quarter turn either way).
ROTATION_FACTOR = 0.25
ZOOM_FACTOR = 0.1
CONTRAST_FACTOR = 0.1


def affine_params(
    batch: tf.Tensor, seed: keras.random.SeedGenerator, rotation: float, zoom: float
) -> tf.Tensor:
    """(batch, 4) row-major 2x2 matrices mapping an output pixel (about the centre) to its source.

    source - centre = flips @ rotation @ zoom @ (output - centre): the composition of
    RandomFlip -> RandomRotation -> RandomZoom, each of which maps an output coordinate to the
    coordinate it samples in its input.
    """
    angle = keras.random.uniform((batch,), -rotation * 2 * math.pi, rotation * 2 * math.pi, seed=seed)
    scale = keras.random.uniform((batch,), 1.0 - zoom, 1.0 + zoom, seed=seed)
    flips = keras.random.uniform((batch, 2), 0.0, 1.0, seed=seed)
    fx = tf.where(flips[:, 0] < 0.5, -1.0, 1.0)
    fy = tf.where(flips[:, 1] < 0.5, -1.0, 1.0)
    cos, sin = tf.cos(angle) * scale, tf.sin(angle) * scale
    return tf.stack([fx * cos, -fx * sin, fy * sin, fy * cos], axis=1)


def _reflect(coord: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """TensorFlow's REFLECT fill ``(d c b a | a b c d | d c b a)`` on continuous coordinates, then the
    clamp to [0, size - 1]. One reflection suffices: a zoom of at most 1.1 around the centre reaches
    at most 0.78 sizes from it.
    """
    coord = tf.where(coord < 0.0, -coord - 1.0, coord)
    coord = tf.where(coord > size - 1.0, 2.0 * size - coord - 1.0, coord)
    return tf.clip_by_value(coord, 0.0, size - 1.0)


@tf.function(jit_compile=True, reduce_retracing=True)
def warp_and_contrast(images: tf.Tensor, matrices: tf.Tensor, contrast: tf.Tensor) -> tf.Tensor:
    """Resample each image through its affine map (bilinear, reflect fill), then scale its contrast.

    ``images`` (B, H, W, C) uint8 or float in [0, 255]; ``matrices`` (B, 4) from :func:`affine_params`;
    ``contrast`` (B,) factors. Returns float32 in [0, 255]. One XLA computation.
    """
    shape = tf.shape(images)
    b, h, w = shape[0], shape[1], shape[2]
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    cy, cx = (hf - 1.0) / 2.0, (wf - 1.0) / 2.0
    ys, xs = tf.meshgrid(tf.range(hf) - cy, tf.range(wf) - cx, indexing="ij")
    m = matrices[:, :, None, None]
    sx = _reflect(m[:, 0] * xs + m[:, 1] * ys + cx, wf)
    sy = _reflect(m[:, 2] * xs + m[:, 3] * ys + cy, hf)
    x0, y0 = tf.floor(sx), tf.floor(sy)
    wx, wy = (sx - x0)[..., None], (sy - y0)[..., None]
    x0i, y0i = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    x1i, y1i = tf.minimum(x0i + 1, w - 1), tf.minimum(y0i + 1, h - 1)
    flat = tf.reshape(images, [b * h * w, -1])
    base = (tf.range(b) * h * w)[:, None, None]

    def pixel(y: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
        return tf.cast(tf.gather(flat, base + y * w + x), tf.float32)

    top = pixel(y0i, x0i) * (1.0 - wx) + pixel(y0i, x1i) * wx
    bottom = pixel(y1i, x0i) * (1.0 - wx) + pixel(y1i, x1i) * wx
    out = top * (1.0 - wy) + bottom * wy
    # The pivot is each channel's mean of the *source* image: the output is then written in one pass
    # (the transformed image's mean, RandomContrast's pivot, would need a second pass over it; ~25%
    # of the cost). The two means differ by a few grey levels at most here (the zoom crops or adds
    # <= 10% of the border, the reflect fill mirrors the image itself), which moves the output by
    # (1 - factor) x that difference: about one grey level at most (tests/unit/test_speed_augment.py).
    mean = tf.reduce_mean(tf.cast(images, tf.float32), axis=(1, 2), keepdims=True)
    out = (out - mean) * contrast[:, None, None, None] + mean
    return tf.clip_by_value(out, 0.0, 255.0)


@keras.saving.register_keras_serializable(package="melanoma")
class Augment(keras.layers.Layer):
    """uint8 RGB batch -> float32 batch; flips/rotation/zoom/contrast when ``training`` and enabled."""

    def __init__(
        self,
        enabled: bool = True,
        rotation: float = ROTATION_FACTOR,
        zoom: float = ZOOM_FACTOR,
        contrast: float = CONTRAST_FACTOR,
        seed: int | None = None,
        **kwargs: object,
    ) -> None:
        kwargs.setdefault("dtype", "float32")  # the classifier casts to its own compute dtype
        super().__init__(**kwargs)
        self.enabled, self.rotation, self.zoom, self.contrast, self.seed = (
            enabled, rotation, zoom, contrast, seed,
        )  # fmt: skip
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):  # type: ignore[override]
        if not (training and self.enabled):
            return tf.cast(images, tf.float32)
        batch = tf.shape(images)[0]
        matrices = affine_params(batch, self.seed_generator, self.rotation, self.zoom)
        factors = keras.random.uniform(
            (batch,), 1.0 - self.contrast, 1.0 + self.contrast, seed=self.seed_generator
        )
        return warp_and_contrast(images, matrices, factors)

    def compute_output_shape(self, input_shape):  # type: ignore[override]
        return input_shape

    def get_config(self) -> dict[str, object]:
        return {
            **super().get_config(),
            "enabled": self.enabled,
            "rotation": self.rotation,
            "zoom": self.zoom,
            "contrast": self.contrast,
            "seed": self.seed,
        }


def training_model(clf: keras.Model, augment: bool, seed: int, fold_batchnorm: bool = True) -> keras.Model:
    """``clf`` behind an :class:`Augment` front that takes the uint8 batches of the input pipeline.

    The weights are ``clf``'s own (shared), so training this model trains ``clf``; only ``clf`` is
    saved, so the served model never augments. ``fold_batchnorm``: run ``clf`` with its frozen
    BatchNorm layers folded into their convolutions (the same function, less work:
    :mod:`.batchnorm_fold`).
    """
    inputs = keras.Input(clf.input_shape[1:], dtype="uint8", name="image_uint8")
    x = Augment(enabled=augment, seed=seed, name="augment")(inputs)
    body = batchnorm_fold.fold(clf) if fold_batchnorm else clf
    return keras.Model(inputs, body(x), name=f"{clf.name}_training")
