"""Validation on cached features while the base is frozen (Stage 1): the base runs once, not every epoch.

In Stage 1 only the head trains. The validation images are never augmented, and a frozen ResNet50
(BatchNorm in inference mode, no dropout) maps each one to the same pooled 2048 features at every
epoch: recomputing them is the whole cost of validating, a full forward pass of the base over the
validation set each epoch (about a seventh of the demo's Stage 1 epoch). :class:`CachedValidation`
computes them once, at the end of the first epoch, and each epoch scores only the head on them,
with the same loss and metrics objects ``compile`` uses, writing ``val_loss``, ``val_auc`` and
``val_accuracy`` into the epoch's logs as Keras' own validation would (same values up to float
rounding: tests/unit/test_speed_fold.py). It must come before the callbacks that read them (early
stopping, the checkpoint, MLflow): ``training.prepare`` puts it first.

It applies exactly when every trainable weight of the classifier is in the head
(:data:`~melanoma_mlops.model.network.HEAD_LAYERS`); Stage 2 and single-stage training validate the
usual way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from melanoma_mlops.model import network

logger = logging.getLogger(__name__)

FEATURES_LAYER = "gap"


def applies(clf: keras.Model) -> bool:
    """Is everything before the head frozen, so the validation features cannot change?"""
    body = [layer for layer in clf.layers if layer.name not in network.HEAD_LAYERS]
    head = [clf.get_layer(name) for name in network.HEAD_LAYERS if name in {x.name for x in clf.layers}]
    return (
        len(head) == len(network.HEAD_LAYERS)
        and bool(clf.trainable_weights)
        and not any(w.trainable for layer in body for w in layer.weights)
    )


class CachedValidation(keras.callbacks.Callback):
    """Fill the epoch's ``val_*`` logs from the head applied to cached validation features.

    ``features`` maps a float32 image batch to the pooled features (the classifier up to
    :data:`FEATURES_LAYER`; the caller may pass a faster equivalent, e.g. the folded graph);
    ``scoring`` makes the loss and the metrics, as the training model was compiled with them.
    """

    def __init__(
        self,
        clf: keras.Model,
        val_ds: tf.data.Dataset,
        scoring: Callable[[], tuple[keras.losses.Loss, list[keras.metrics.Metric]]],
        features: Callable[[tf.Tensor], tf.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.clf = clf
        self.val_ds = val_ds
        self.scoring = scoring
        self._features_fn = features or keras.Model(clf.input, clf.get_layer(FEATURES_LAYER).output)
        self._cached: tuple[np.ndarray, np.ndarray] | None = None

    def _features(self) -> tuple[np.ndarray, np.ndarray]:
        if self._cached is None:
            extract = tf.function(lambda x: self._features_fn(tf.cast(x, tf.float32), training=False))
            feats, labels = [], []
            for images, y in self.val_ds:
                feats.append(extract(images).numpy())
                labels.append(y.numpy())
            self._cached = (np.concatenate(feats), np.concatenate(labels).reshape(-1, 1))
            logger.info("validation features cached: %d images (the base is frozen)", len(self._cached[0]))
        return self._cached

    def _head(self, features: np.ndarray) -> np.ndarray:
        x = tf.constant(features)
        for name in network.HEAD_LAYERS[1:]:  # the pooling is in the features
            x = self.clf.get_layer(name)(x, training=False)
        return x.numpy()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:
            return
        features, labels = self._features()
        predictions = self._head(features)
        loss, metrics = self.scoring()
        logs["val_loss"] = float(loss(labels, predictions))
        for metric in metrics:
            metric.update_state(labels, predictions)
            logs[f"val_{metric.name}"] = float(metric.result())
