"""The paper's training code as published, written here from its description (not copied from it).

* Input: a ``tf.data`` pipeline that, **every epoch**, reads each JPEG, decodes it, resizes it to the
  network's size, applies random horizontal flips, brightness and saturation changes (training
  only), then ResNet50's ``preprocess_input``; shuffled, batched, prefetched.
* Model: Keras ResNet50 without its top (``weights=None`` here: no download; the arithmetic is the
  same) -> GlobalAveragePooling2D -> Dense(1024, relu) -> Dense(1, sigmoid); BatchNorm trainable.
* Stage 1: the base frozen (``base.trainable = False``), the head trained with Adam. Stage 2: every
  layer trainable, BatchNorm included (so it uses batch statistics and updates its moving ones), Adam
  at 1e-5. Binary cross-entropy; accuracy and AUC reported; validation every epoch.
* Precision: float32 as published; ``mixed_bfloat16`` is the one-line switch the script could make
  (``keras.mixed_precision.set_global_policy`` before building), so it is offered for a comparison
  at equal precision.

The values the description leaves open (Stage 1's learning rate, the brightness and saturation
ranges) are set to ours (1e-3) or to common choices; they do not change the arithmetic.

Only TensorFlow and Keras are imported here: a worker that runs this arm "as published" imports
nothing of the project (which switches oneDNN on), so TensorFlow runs with its own defaults.
"""

from __future__ import annotations

import keras
import pandas as pd
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE
STAGE1_LR = 1e-3
STAGE2_LR = 1e-5


def dataset(df: pd.DataFrame, size: int, batch: int, *, training: bool, seed: int = 0) -> tf.data.Dataset:
    """(preprocessed image, label) batches, decoded and augmented anew every epoch."""

    def load(uri: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.io.decode_jpeg(tf.io.read_file(uri), channels=3)
        image = tf.image.resize(image, (size, size))
        if training:
            image = tf.image.random_flip_left_right(image)
            image = tf.image.random_brightness(image, max_delta=0.1 * 255)
            image = tf.image.random_saturation(image, 0.9, 1.1)
        return keras.applications.resnet50.preprocess_input(image), label

    ds = tf.data.Dataset.from_tensor_slices((df["image_uri"].tolist(), df["label"].astype("float32").values))
    if training:
        ds = ds.shuffle(len(df), seed=seed, reshuffle_each_iteration=True)
    return ds.map(load, num_parallel_calls=AUTOTUNE).batch(batch).prefetch(AUTOTUNE)


def build(size: int) -> tuple[keras.Model, keras.Model]:
    """(classifier, its ResNet50 base) under the current global dtype policy."""
    base = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(size, size, 3))
    x = keras.layers.GlobalAveragePooling2D()(base.output)
    x = keras.layers.Dense(1024, activation="relu")(x)
    out = keras.layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(base.input, out), base


def compile_stage(model: keras.Model, base: keras.Model, stage: str) -> None:
    """Freeze (Stage 1) or unfreeze everything (Stage 2), then compile at the stage's rate."""
    base.trainable = stage != "stage1"
    model.compile(
        optimizer=keras.optimizers.Adam(STAGE1_LR if stage == "stage1" else STAGE2_LR),
        loss="binary_crossentropy",
        metrics=["accuracy", keras.metrics.AUC(name="auc")],
    )
