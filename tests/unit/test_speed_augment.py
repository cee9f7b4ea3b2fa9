"""Augmentation on the training device: the same transformations and ranges as the Keras layers it
replaces, one resampling, only in the training model (never saved, never in evaluation/serving)."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from melanoma_mlops.model import augment, network

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (6, 24, 24, 3)).astype(np.uint8)


def _matrices(angle, zoom, fx, fy) -> np.ndarray:
    angle, zoom, fx, fy = map(np.asarray, (angle, zoom, fx, fy))
    c, s = np.cos(angle) * zoom, np.sin(angle) * zoom
    return np.stack([fx * c, -fx * s, fy * s, fy * c], 1).astype(np.float32)


def test_the_warp_follows_tensorflows_projective_transform_with_reflect_fill() -> None:
    m = _matrices([0.3, -1.2, 1.5, 0.0, 0.7, -0.4], [0.9, 1.1, 1.0, 1.05, 0.95, 1.1], [1, -1, 1, -1, 1, 1],
                  [1, 1, -1, -1, 1, -1])  # fmt: skip
    ours = augment.warp_and_contrast(tf.constant(IMAGES), tf.constant(m), tf.ones(6)).numpy()
    c = (24 - 1) / 2
    t = np.stack(
        [m[:, 0], m[:, 1], c - m[:, 0] * c - m[:, 1] * c, m[:, 2], m[:, 3], c - m[:, 2] * c - m[:, 3] * c,
         np.zeros(6), np.zeros(6)], 1,
    ).astype(np.float32)  # fmt: skip
    reference = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.constant(IMAGES, tf.float32), transforms=t, output_shape=[24, 24], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="REFLECT",
    ).numpy()  # fmt: skip
    np.testing.assert_allclose(ours, reference, atol=0.01)


def test_one_resampling_equals_keras_rotation_then_zoom_away_from_the_borders() -> None:
    """The composition is what RandomRotation then RandomZoom do, less their second resampling."""
    from keras.src import backend

    angle, zoom = 0.5, 1.08
    yy, xx = np.mgrid[0:64, 0:64] / 64.0  # a smooth image: interpolation-robust
    x = tf.constant(
        np.stack([128 + 100 * np.sin(3 * xx + 1) * np.cos(2 * yy), 255 * xx, 255 * yy], -1)[None],
        tf.float32,
    )
    ours = augment.warp_and_contrast(x, tf.constant(_matrices([angle], [zoom], [1], [1])), tf.ones(1))
    c = 63 / 2
    rot = [math.cos(angle), -math.sin(angle), c - c * math.cos(angle) + c * math.sin(angle),
           math.sin(angle), math.cos(angle), c - c * math.sin(angle) - c * math.cos(angle), 0, 0]  # fmt: skip
    zoom_m = [zoom, 0, c * (1 - zoom), 0, zoom, c * (1 - zoom), 0, 0]
    keras_way = x
    for matrix in (rot, zoom_m):  # Keras applies RandomRotation, then RandomZoom
        keras_way = backend.image.affine_transform(
            keras_way, tf.constant([matrix], tf.float32), interpolation="bilinear", fill_mode="reflect"
        )
    centre = slice(20, 44)
    diff = np.abs(ours.numpy()[0, centre, centre] - keras_way.numpy()[0, centre, centre])
    assert diff.max() < 2.0, diff.max()


def test_pure_flips_and_contrast_are_exact() -> None:
    m = _matrices([0, 0, 0], [1, 1, 1], [-1, 1, -1], [1, -1, -1])
    out = augment.warp_and_contrast(tf.constant(IMAGES[:3]), tf.constant(m), tf.ones(3)).numpy()
    np.testing.assert_allclose(out[0], IMAGES[0, :, ::-1], atol=1e-3)
    np.testing.assert_allclose(out[1], IMAGES[1, ::-1], atol=1e-3)
    np.testing.assert_allclose(out[2], IMAGES[2, ::-1, ::-1], atol=1e-3)
    identity = _matrices([0], [1], [1], [1])
    contrast = augment.warp_and_contrast(tf.constant(IMAGES[:1]), tf.constant(identity), tf.constant([1.1]))
    x = IMAGES[:1].astype(np.float32)
    mean = x.mean(axis=(1, 2), keepdims=True)  # RandomContrast: per image and channel
    np.testing.assert_allclose(contrast.numpy(), np.clip((x - mean) * 1.1 + mean, 0, 255), atol=1e-3)


def test_the_contrast_pivot_is_within_a_grey_level_of_keras(demo_dir) -> None:
    """Keras pivots on the transformed image's mean; ours on the source's (one pass fewer)."""
    from PIL import Image

    paths = sorted(demo_dir.glob("*/*.png"))
    lesions = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
    m = augment.affine_params(len(lesions), keras.random.SeedGenerator(2), 0.25, 0.1)
    factors = tf.constant(np.full(len(lesions), 0.9, np.float32))
    ours = augment.warp_and_contrast(tf.constant(lesions), m, factors).numpy()
    warped = augment.warp_and_contrast(tf.constant(lesions), m, tf.ones(len(lesions))).numpy()
    mean = warped.mean(axis=(1, 2), keepdims=True)
    keras_way = np.clip((warped - mean) * 0.9 + mean, 0, 255)
    assert np.abs(ours - keras_way).max() < 1.5  # measured 1.0 at the extreme factor 0.9


def test_random_parameters_stay_in_the_keras_ranges() -> None:
    m = augment.affine_params(20000, keras.random.SeedGenerator(1), 0.25, 0.1).numpy()
    scale = np.sqrt(m[:, 0] ** 2 + m[:, 2] ** 2)  # the length of a column is the zoom
    assert scale.min() >= 0.9 - 1e-6 and scale.max() <= 1.1 + 1e-6
    det = m[:, 0] * m[:, 3] - m[:, 1] * m[:, 2]  # negative exactly when one axis is mirrored
    assert 0.47 < (det < 0).mean() < 0.53
    # Without flips the map is a rotation: cos(angle) = m00 / zoom >= 0 for |angle| <= 90 degrees;
    # a 180-degree turn (both flips) negates it. So a quarter of the rows have cos < 0.
    cos = m[:, 0] / scale
    assert 0.22 < ((cos < 0) & (det > 0)).mean() < 0.28


def test_the_layer_augments_only_in_training_and_is_seeded() -> None:
    layer = augment.Augment(seed=3)
    plain = layer(IMAGES, training=False).numpy()
    np.testing.assert_array_equal(plain, IMAGES.astype(np.float32))
    a = augment.Augment(seed=3)(IMAGES, training=True).numpy()
    b = augment.Augment(seed=3)(IMAGES, training=True).numpy()
    c = augment.Augment(seed=4)(IMAGES, training=True).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, plain)
    assert a.dtype == np.float32 and a.min() >= 0 and a.max() <= 255
    off = augment.Augment(enabled=False, seed=3)(IMAGES, training=True).numpy()
    np.testing.assert_array_equal(off, IMAGES.astype(np.float32))


def test_the_training_model_trains_the_classifier_and_the_saved_classifier_never_augments(
    tmp_path,
) -> None:
    keras.utils.set_random_seed(0)
    clf = network.build_classifier(32, "none", 0.0)
    trainer = augment.training_model(clf, augment=True, seed=0)
    assert trainer.input.dtype == "uint8"
    assert {id(w) for w in clf.weights} <= {id(w) for w in trainer.weights}
    x = RNG.integers(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    np.testing.assert_allclose(
        trainer(x, training=False), clf(x.astype(np.float32), training=False), atol=1e-5
    )
    clf.save(tmp_path / "m.keras")
    saved = network.load(tmp_path / "m.keras")
    assert not any(isinstance(layer, augment.Augment) for layer in saved.layers)
    first = saved(x.astype(np.float32), training=True)
    np.testing.assert_allclose(first, saved(x.astype(np.float32), training=True), atol=1e-6)


@pytest.mark.parametrize("size", [24, 31])
def test_odd_and_even_sizes_keep_shape(size: int) -> None:
    x = RNG.integers(0, 256, (2, size, size, 3)).astype(np.uint8)
    assert augment.Augment(seed=0)(x, training=True).shape == (2, size, size, 3)
