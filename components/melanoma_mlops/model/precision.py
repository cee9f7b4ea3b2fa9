"""Hardware-dependent switches of training: mixed precision and XLA (``auto`` | ``on`` | ``off``)."""

from __future__ import annotations

import logging

import keras

logger = logging.getLogger(__name__)


def gpu_present() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def switch(value: str) -> bool:
    """Resolve an auto/on/off option: ``auto`` means on exactly when a GPU is visible."""
    return gpu_present() if value == "auto" else value == "on"


def set_precision(mixed_precision: str) -> str:
    """Set Keras' global dtype policy before a model is built or loaded; return the policy name.

    mixed_float16 computes in float16 on tensor cores with float32 weights; Keras wraps the
    optimizer in a LossScaleOptimizer on compile. The head's output layer stays float32.
    """
    policy = "mixed_float16" if switch(mixed_precision) else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy
