"""Less work per training step, the same training: frozen BatchNorm folded into its convolution, and
Stage 1's validation on features computed once (the base is frozen).

Both are exact rewrites: the folded graph has the unfolded one's outputs and gradients (float32 to
rounding; under bfloat16 no further from float32 than the unfolded graph is), runs the same
variables in the same order, and leaves BatchNorm that trains alone; cached validation writes the
same ``val_*`` figures as Keras' own validation pass.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from keras import layers

from melanoma_mlops.model import augment, batchnorm_fold, frozen_validation, network, training

RNG = np.random.default_rng(0)
X = RNG.uniform(0, 255, (6, 32, 32, 3)).astype(np.float32)
Y = np.array([[0], [1], [1], [0], [1], [0]], np.float32)


def _classifier(stage: str, policy: str = "float32") -> keras.Model:
    """A 32-px classifier whose BatchNorm statistics are far from the identity (folding matters)."""
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        clf = network.build_classifier(32, "none", 0.0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    rng = np.random.default_rng(1)
    for layer in clf.get_layer(network.BASE_NAME).layers:
        if isinstance(layer, layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.2, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))
            layer.gamma.assign(rng.uniform(0.5, 1.5, n))
            layer.beta.assign(rng.normal(0, 0.2, n))
    if stage == "stage2":
        network.unfreeze(clf, bn_inference=True)
    elif stage == "stage2-bn-trains":
        network.unfreeze(clf, bn_inference=False)
    return clf


def _folded(clf: keras.Model) -> keras.Model:
    inputs = keras.Input((32, 32, 3))
    return keras.Model(inputs, batchnorm_fold.fold(clf)(inputs))


def _gradients(model: keras.Model) -> list[np.ndarray]:
    with tf.GradientTape() as tape:
        loss = keras.losses.BinaryCrossentropy()(Y, model(X, training=True))
    return [np.asarray(g, np.float32) for g in tape.gradient(loss, model.trainable_variables)]


def _relative(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.linalg.norm(x - y) / (np.linalg.norm(x) + 1e-12)) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_the_folded_graph_is_the_same_function_with_the_same_gradients(stage: str) -> None:
    clf = _classifier(stage)
    folded = _folded(clf)
    assert batchnorm_fold.fold(clf).folded == 53  # every BatchNorm of ResNet50
    assert [id(v) for v in folded.variables] == [id(v) for v in clf.variables]
    assert [id(v) for v in folded.trainable_variables] == [id(v) for v in clf.trainable_variables]
    for mode in (False, True):
        np.testing.assert_allclose(folded(X, training=mode), clf(X, training=mode), atol=1e-5)
    assert _relative(_gradients(clf), _gradients(folded)) < 1e-4


def test_under_bfloat16_the_folded_graph_is_no_further_from_float32_than_the_unfolded() -> None:
    reference = _gradients(_classifier("stage2"))
    clf = _classifier("stage2", "mixed_bfloat16")
    plain, folded = _relative(reference, _gradients(clf)), _relative(reference, _gradients(_folded(clf)))
    assert folded < max(2 * plain, 0.05), (plain, folded)


def test_batchnorm_that_trains_is_not_folded() -> None:
    clf = _classifier("stage2-bn-trains")
    assert batchnorm_fold.fold(clf) is clf  # nothing frozen to fold: the classifier itself


def test_training_through_the_folded_model_trains_the_classifier() -> None:
    clf = _classifier("stage2")
    trainer = augment.training_model(clf, augment=False, seed=0)
    training.compile_model(trainer, 1e-3)
    before = [np.array(w) for w in clf.trainable_weights]
    trainer.train_on_batch(X.astype(np.uint8), Y)
    assert all(not np.allclose(b, np.asarray(w)) for b, w in zip(before, clf.trainable_weights, strict=True))


def test_cached_validation_applies_only_while_the_base_is_frozen() -> None:
    assert frozen_validation.applies(_classifier("stage1"))
    assert not frozen_validation.applies(_classifier("stage2"))


def _stage1_history(demo_dir: Path, cached: bool) -> dict[str, list[float]]:
    paths = sorted(demo_dir.glob("*/*.png"))
    df = pd.DataFrame(
        {"image_uri": [str(p) for p in paths], "label": [int(p.parent.name == "malignant") for p in paths]}
    )
    df = df.sample(frac=1.0, random_state=0)
    keras.utils.set_random_seed(0)
    clf = network.build_classifier(32, "none", 0.5)
    fitting = training.prepare(clf, df.iloc[:28], df.iloc[28:], lr=1e-2, image_size=32, batch_size=8,
                               augment=True, seed=0, cached_validation=cached)  # fmt: skip
    assert (fitting.val_ds is None) == cached
    return fitting.trainer.fit(
        fitting.train_ds, validation_data=fitting.val_ds, epochs=3, callbacks=fitting.callbacks, verbose=0
    ).history


def test_cached_validation_reports_what_keras_validation_reports(demo_dir: Path) -> None:
    keras_way, cached = _stage1_history(demo_dir, cached=False), _stage1_history(demo_dir, cached=True)
    assert sorted(cached) == sorted(keras_way)
    for key in ("loss", "auc", "accuracy"):
        assert cached[key] == keras_way[key]  # training itself is untouched
    for key in ("val_loss", "val_auc", "val_accuracy"):
        np.testing.assert_allclose(cached[key], keras_way[key], rtol=1e-5, atol=1e-6)
    assert len(set(keras_way["val_loss"])) == 3  # the head trained: validation moved every epoch
