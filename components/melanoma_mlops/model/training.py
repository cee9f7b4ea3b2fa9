"""The one training helper every schedule uses: compile, fit with early stopping, save.

It knows nothing of MLflow or Kubeflow: the caller passes Keras callbacks (the steps pass one
that logs each epoch to MLflow) and receives a :class:`StageResult`.

What is fitted is the classifier behind an augmentation front (:func:`augment.training_model`,
which also folds frozen BatchNorm into the convolutions: :mod:`.batchnorm_fold`), fed uint8
batches from an image store (:mod:`melanoma_mlops.model.dataset`); only the classifier is saved.
While the base is frozen (Stage 1) validation scores the head on features computed once
(:mod:`.frozen_validation`). Under a ``tf.distribute`` strategy the training model and its optimizer
are made in the strategy's scope and Keras splits each global batch across the replicas.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import pandas as pd
import tensorflow as tf

from melanoma_mlops import disk_space
from melanoma_mlops.artifacts import HISTORY_FILE, MODEL_FILE
from melanoma_mlops.data import manifest
from melanoma_mlops.model import augment as augmentation
from melanoma_mlops.model import checkpoint, dataset, frozen_validation

logger = logging.getLogger(__name__)


@dataclass
class StageResult:
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    best_val_auc: float = float("nan")
    epochs_run: int = 0
    seconds: float = 0.0
    images_per_second: float = 0.0
    trainable_params: int = 0

    def summary_metrics(self, stage: str) -> dict[str, float]:
        """``<stage>/best_val_auc`` ... for MLflow; the best epoch counted from 1, as on the console."""
        return {
            f"{stage}/best_val_auc": self.best_val_auc,
            f"{stage}/best_epoch": self.best_epoch + 1,
            f"{stage}/epochs_run": self.epochs_run,
            f"{stage}/train_seconds": self.seconds,
            f"{stage}/images_per_second": self.images_per_second,
        }


@keras.saving.register_keras_serializable(package="melanoma")
class FusedAdam(keras.optimizers.Adam):
    """Keras' Adam, each variable's update as TensorFlow's one fused kernel (``ResourceApplyAdam``).

    The same update (Kingma & Ba's with the epsilon-hat form both compute: ``m += (g - m)(1 - b1)``,
    ``v += (g^2 - v)(1 - b2)``, ``w -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)``) and the
    same variables (checkpoints are unchanged), but one op per variable instead of about thirty: a
    Stage 2 training step has 108 variables, and tracing and optimising those ops was a third of
    the graph building in every stage's first epoch (benchmarks/README.md). Registered, so that a
    compiled model saved or cloned with it loads with its optimizer.
    """

    def update_step(self, gradient, variable, learning_rate):  # type: ignore[override]
        if self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        return tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=self._momentums[index].handle,
            v=self._velocities[index].handle,
            beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype),
            beta1=beta_1,
            beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype),
        )


def scoring() -> tuple[keras.losses.Loss, list[keras.metrics.Metric]]:
    """The training loss and metrics (new objects): what ``compile`` and cached validation use."""
    return keras.losses.BinaryCrossentropy(), [
        keras.metrics.AUC(name="auc"),
        keras.metrics.BinaryAccuracy(name="accuracy"),
    ]


def compile_model(model: keras.Model, lr: float, jit_compile: bool = False) -> None:
    loss, metrics = scoring()
    model.compile(optimizer=FusedAdam(learning_rate=lr), loss=loss, metrics=metrics, jit_compile=jit_compile)
    # Its slots now, not on the first step: variables made while tf.function traces force a second
    # trace of the whole training step (half the first epoch's graph building).
    model.optimizer.build(model.trainable_variables)


def trainable_parameters(model: keras.Model) -> int:
    return sum(int(keras.ops.size(w)) for w in model.trainable_weights)


@dataclass
class Fitting:
    """What :func:`fit` runs: the training model, its data and the callbacks that must come first
    (they fill the ``val_*`` logs when validation runs on cached features, ``val_ds`` then None).
    ``benchmarks/bench_peer.py`` runs it one epoch at a time."""

    trainer: keras.Model
    train_ds: tf.data.Dataset
    val_ds: tf.data.Dataset | None
    callbacks: list[keras.callbacks.Callback] = field(default_factory=list)


def prepare(
    model: keras.Model,
    train: pd.DataFrame,
    val: pd.DataFrame,
    *,
    lr: float,
    image_size: int,
    batch_size: int,
    augment: bool,
    seed: int,
    jit_compile: bool = False,
    store: dataset.ImageStore | None = None,
    strategy: tf.distribute.Strategy | None = None,
    fold_batchnorm: bool = True,
    cached_validation: bool = True,
) -> Fitting:
    """The training model (compiled) and the input pipelines of one stage; see :func:`fit`.

    ``fold_batchnorm=False`` trains the unfolded graph, ``cached_validation=False`` validates with
    Keras' own pass over the images every epoch (the same results; for tests and measurements).
    """
    keras.utils.set_random_seed(seed)
    strategy = strategy or tf.distribute.get_strategy()
    store = store or dataset.MemoryStore.decode([train, val], image_size)
    train_ds = dataset.from_store(store, train, batch_size, training=True, seed=seed, dtype=tf.uint8)
    val_ds = dataset.from_store(store, val, batch_size, dtype=tf.uint8)
    with strategy.scope():
        trainer = augmentation.training_model(model, augment, seed, fold_batchnorm=fold_batchnorm)
        compile_model(trainer, lr, jit_compile)
    if not (cached_validation and frozen_validation.applies(model)):
        return Fitting(trainer, train_ds, val_ds)
    cached = frozen_validation.CachedValidation(model, val_ds, scoring)
    return Fitting(trainer, train_ds, None, [cached])


def fit(
    model: keras.Model,
    train: pd.DataFrame,
    val: pd.DataFrame,
    *,
    stage: str,
    lr: float,
    epochs: int,
    patience: int,
    image_size: int,
    batch_size: int,
    augment: bool,
    seed: int,
    jit_compile: bool = False,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    initial_epoch: int = 0,
    store: dataset.ImageStore | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> StageResult:
    """Train until validation AUC stops improving; the best epoch's weights are restored.

    ``batch_size`` is the global batch (split across the strategy's replicas); ``store`` holds the
    decoded training and validation images (decoded into memory here when not given).
    ``initial_epoch``: epochs already done (Keras' own argument). A resumable checkpoint among the
    ``callbacks`` (:class:`~melanoma_mlops.model.checkpoint.EpochCheckpoint`) resumes the stage
    (:func:`_fit_with_early_stopping`).
    """
    if epochs == 0:
        logger.info("%s: 0 epochs requested, model left as it is", stage)
        return StageResult()
    fitting = prepare(
        model, train, val, lr=lr, image_size=image_size, batch_size=batch_size, augment=augment,
        seed=seed, jit_compile=jit_compile, store=store, strategy=strategy,
    )  # fmt: skip
    logger.info(
        "%s: %d train images %s, %d val images, lr %g, up to %d epochs",
        stage,
        len(train),
        manifest.class_counts(train),
        len(val),
        lr,
        epochs,
    )
    start = time.perf_counter()
    history = _fit_with_early_stopping(
        fitting,
        epochs=epochs,
        patience=patience,
        initial_epoch=initial_epoch,
        callbacks=callbacks,
    )
    return _summarize(stage, history, len(train), time.perf_counter() - start)


def _fit_with_early_stopping(
    fitting: Fitting,
    *,
    epochs: int,
    patience: int,
    initial_epoch: int,
    callbacks: Sequence[keras.callbacks.Callback],
) -> dict[str, list[float]]:
    """Keras' fit until validation AUC stops improving (best weights restored); every epoch's history.

    A resumable checkpoint among ``callbacks`` restores the weights, the optimizer and the
    early-stopping state, moves the initial epoch past the epochs it holds (to ``epochs`` when the
    stage had stopped early, so no further epoch runs) and supplies their history.
    """
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_auc", mode="max", patience=patience, restore_best_weights=True, verbose=0
    )
    resumable = next((c for c in callbacks if isinstance(c, checkpoint.EpochCheckpoint)), None)
    if resumable is not None:
        resumable.track(stopper)
        initial_epoch = epochs if resumable.stopped else max(initial_epoch, resumable.initial_epoch)
    history = fitting.trainer.fit(
        fitting.train_ds,
        validation_data=fitting.val_ds,
        epochs=epochs,
        callbacks=[*fitting.callbacks, stopper, *callbacks],
        verbose=2,
        initial_epoch=initial_epoch,
    ).history
    return resumable.full_history(history) if resumable is not None else history


def _summarize(stage: str, history: dict[str, list[float]], n_train: int, seconds: float) -> StageResult:
    """The stage's result from its full history: the best epoch by validation AUC, the throughput."""
    val_auc = history.get("val_auc", [])
    best = int(max(range(len(val_auc)), key=val_auc.__getitem__)) if val_auc else 0
    result = StageResult(
        history={k: [float(v) for v in vs] for k, vs in history.items()},
        best_epoch=best,
        best_val_auc=float(val_auc[best]) if val_auc else float("nan"),
        epochs_run=len(val_auc),
        seconds=seconds,
        images_per_second=n_train * len(val_auc) / seconds if seconds else 0.0,
    )
    logger.info(
        "%s: best val AUC %.4f at epoch %d (%d epochs run)",
        stage,
        result.best_val_auc,
        best + 1,
        result.epochs_run,
    )
    return result


def save(model: keras.Model, result: StageResult, out_dir: str | Path) -> Path:
    """Write ``model.keras`` and ``history.json`` into ``out_dir`` (a KFP Model artifact folder)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # No optimizer state in a stage's output (the next stage compiles its own; the per-epoch
    # checkpoint keeps it for resuming): ~190 MB less per ResNet50 stage. A failed write (a full
    # disk) leaves no partial model behind.
    with disk_space.removing_on_failure(out / MODEL_FILE, out / HISTORY_FILE):
        with checkpoint.without_optimizer(model):
            model.save(out / MODEL_FILE)
        (out / HISTORY_FILE).write_text(json.dumps(result.__dict__, indent=2))
    return out / MODEL_FILE
