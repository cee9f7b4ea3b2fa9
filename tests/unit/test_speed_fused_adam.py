"""The fused Adam (one ``ResourceApplyAdam`` per variable) is Keras' Adam: same weights and slots after
several steps, and its slots exist before the first step (no second trace of the training step)."""

from __future__ import annotations

import keras
import numpy as np

from melanoma_mlops.model import training


def _trained(optimizer: keras.optimizers.Optimizer) -> tuple[list[np.ndarray], keras.optimizers.Optimizer]:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=optimizer, loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 5)).astype("float32"), rng.normal(size=(16, 1)).astype("float32")
    for _ in range(5):
        model.train_on_batch(x, y)
    return [np.asarray(w) for w in model.weights], optimizer


def test_fused_adam_updates_as_keras_adam_does() -> None:
    keras_way, adam = _trained(keras.optimizers.Adam(learning_rate=1e-2))
    fused_way, fused = _trained(training.FusedAdam(learning_rate=1e-2))
    for a, b in zip(keras_way, fused_way, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(adam.variables, fused.variables, strict=True):  # iterations, momentums, velocities
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_compile_model_builds_the_optimizer_slots_before_the_first_step() -> None:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    training.compile_model(model, 1e-3)
    assert model.optimizer.built and len(model.optimizer.variables) > 1
