"""tf.data input pipeline built from a manifest, and the one decode/resize used everywhere.

Training, evaluation, Grad-CAM and the served pyfunc all call :func:`decode_resize`, so the
pixels a model sees in production are computed exactly as in training (no train/serve skew).
Images reach the model as float32 RGB in [0, 255]; the model itself applies ResNet50's
preprocessing.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import tensorflow as tf

from melanoma_mlops import storage

logger = logging.getLogger(__name__)

AUTOTUNE = tf.data.AUTOTUNE
# Decoded uint8 images are cached in memory when they fit this budget, so later epochs skip
# decoding entirely (decode dominates at small image sizes on CPU).
CACHE_BUDGET_BYTES = 2 * 1024**3


def decode_resize(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """Encoded JPEG/PNG/BMP/GIF bytes -> float32 (image_size, image_size, 3) in [0, 255]."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    return resize(image, image_size)


def resize(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """uint8/float RGB image(s) -> float32 square image(s) in [0, 255] (bilinear, antialiased)."""
    image = tf.image.resize(tf.cast(image, tf.float32), (image_size, image_size), antialias=True)
    return tf.clip_by_value(image, 0.0, 255.0)


def augmenter(seed: int) -> tf.keras.Sequential:
    """Augmentation as Keras preprocessing layers (dermoscopy has no canonical orientation)."""
    from keras import layers

    return tf.keras.Sequential(
        [
            layers.RandomFlip("horizontal_and_vertical", seed=seed),
            layers.RandomRotation(0.25, fill_mode="reflect", seed=seed),
            layers.RandomZoom(0.1, fill_mode="reflect", seed=seed),
            layers.RandomContrast(0.1, seed=seed),
        ],
        name="augment",
    )


def _read_file(uri: tf.Tensor) -> tf.Tensor:
    return tf.io.read_file(uri)


def _read_any(uri: tf.Tensor) -> tf.Tensor:
    """Reader for s3:// URIs (tf.io cannot read S3 without tensorflow-io)."""

    def _read(u: bytes) -> bytes:
        return storage.read_bytes(u.decode())

    data = tf.numpy_function(_read, [uri], tf.string, stateful=False)
    data.set_shape([])
    return data


def make_dataset(
    manifest: pd.DataFrame,
    image_size: int,
    batch_size: int,
    training: bool = False,
    augment: bool = False,
    seed: int = 0,
) -> tf.data.Dataset:
    """(image, label) batches from a manifest; shuffled and augmented only when ``training``."""
    uris = manifest["image_uri"].astype(str).tolist()
    labels = manifest["label"].astype(np.float32).to_numpy()
    reader = _read_any if any(storage.is_s3(u) for u in uris) else _read_file
    ds = tf.data.Dataset.from_tensor_slices((uris, labels))

    def load(uri: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.cast(decode_resize(reader(uri), image_size), tf.uint8)
        return image, label

    ds = ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    if len(uris) * image_size * image_size * 3 <= CACHE_BUDGET_BYTES:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(len(uris), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=AUTOTUNE)
    if training and augment:
        aug = augmenter(seed)
        ds = ds.map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def load_images(uris: list[str], image_size: int) -> np.ndarray:
    """Decode a list of images into one float32 array (for Grad-CAM and small batches)."""
    # Through uint8 like the training pipeline, so Grad-CAM sees the pixels the model trained on.
    frames = [
        tf.cast(tf.cast(decode_resize(tf.constant(storage.read_bytes(u)), image_size), tf.uint8), tf.float32)
        for u in uris
    ]
    return (
        np.stack([f.numpy() for f in frames])
        if frames
        else np.zeros((0, image_size, image_size, 3), np.float32)
    )
