"""The tf.data pipeline and the shared decode/resize (training == serving pixels)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf
from PIL import Image

from melanoma_mlops.model import dataset


def _manifest(demo_dir: Path) -> pd.DataFrame:
    rows = [(str(p), int(p.parent.name == "malignant")) for p in sorted(demo_dir.glob("*/*.png"))]
    return pd.DataFrame(rows, columns=["image_uri", "label"])


def test_decode_resize_gives_float_rgb_in_0_255() -> None:
    buf = io.BytesIO()
    Image.fromarray(np.full((10, 20, 3), 200, np.uint8)).save(buf, format="PNG")
    out = dataset.decode_resize(tf.constant(buf.getvalue()), 16).numpy()
    assert out.shape == (16, 16, 3)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, 200, atol=1)


def test_grey_images_become_three_channels() -> None:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), 50, np.uint8), mode="L").save(buf, format="PNG")
    assert dataset.decode_resize(tf.constant(buf.getvalue()), 8).shape == (8, 8, 3)


def test_batches_keep_labels_and_order_when_not_training(demo_dir: Path) -> None:
    df = _manifest(demo_dir)
    batches = list(dataset.make_dataset(df, 32, 16))
    labels = np.concatenate([y.numpy() for _, y in batches])
    np.testing.assert_array_equal(labels, df["label"].to_numpy())
    assert batches[0][0].shape == (16, 32, 32, 3)


def test_training_batches_are_a_seeded_reshuffle_and_evaluation_keeps_order(demo_dir: Path) -> None:
    df = _manifest(demo_dir).head(8)
    plain = next(iter(dataset.make_dataset(df, 32, 8)))[0].numpy()
    again = next(iter(dataset.make_dataset(df, 32, 8)))[0].numpy()
    np.testing.assert_array_equal(plain, again)
    shuffled = next(iter(dataset.make_dataset(df, 32, 8, training=True, seed=3)))[0].numpy()
    # The same images (no augmentation in the input pipeline: it runs in the training model).
    np.testing.assert_array_equal(
        np.sort(shuffled.reshape(8, -1), axis=0), np.sort(plain.reshape(8, -1), axis=0)
    )
