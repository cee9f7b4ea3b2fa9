"""What Stage 1 and Stage 2 share: compiling, fitting with early stopping, and per-epoch logging.

Epoch metrics are logged with stage-prefixed names (``stage1/val_auc``, ``stage2/loss`` ...) on
the step's run and on the parent run, so two pipeline runs compare cleanly in the MLflow UI.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import pandas as pd

from . import dataset, manifest, tracking

logger = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
HISTORY_FILE = "history.json"


@dataclass
class StageResult:
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    best_val_auc: float = float("nan")
    epochs_run: int = 0
    seconds: float = 0.0
    images_per_second: float = 0.0


class MlflowEpochLogger(keras.callbacks.Callback):
    """Log every epoch's metrics to the active MLflow run and the parent, prefixed by stage."""

    def __init__(self, stage: str, parent_run_id: str | None) -> None:
        super().__init__()
        self.stage = stage
        self.parent_run_id = parent_run_id

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        metrics = {f"{self.stage}/{k}": float(v) for k, v in (logs or {}).items() if k != "learning_rate"}
        tracking.log_metrics(metrics, self.parent_run_id, step=epoch)


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


def compile_model(model: keras.Model, lr: float, jit_compile: bool = False) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
        jit_compile=jit_compile,
    )


def fit_stage(
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
    parent_run_id: str | None = None,
    xla: str = "auto",
) -> StageResult:
    """Train until validation AUC stops improving; the best epoch's weights are restored."""
    keras.utils.set_random_seed(seed)
    train_ds = dataset.make_dataset(train, image_size, batch_size, training=True, augment=augment, seed=seed)
    val_ds = dataset.make_dataset(val, image_size, batch_size)
    jit_compile = switch(xla)
    compile_model(model, lr, jit_compile)
    if epochs == 0:
        logger.info("%s: 0 epochs requested, model left as it is", stage)
        return StageResult()
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_auc", mode="max", patience=patience, restore_best_weights=True, verbose=0
    )
    tracking.log_params({f"{stage}_xla": jit_compile, f"{stage}_gpu": gpu_present()})
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
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        callbacks=[stopper, MlflowEpochLogger(stage, parent_run_id)],
        verbose=2,
    ).history
    seconds = time.perf_counter() - start
    val_auc = history.get("val_auc", [])
    best = int(max(range(len(val_auc)), key=val_auc.__getitem__)) if val_auc else 0
    result = StageResult(
        history={k: [float(v) for v in vs] for k, vs in history.items()},
        best_epoch=best,
        best_val_auc=float(val_auc[best]) if val_auc else float("nan"),
        epochs_run=len(val_auc),
        seconds=seconds,
        images_per_second=len(train) * len(val_auc) / seconds if seconds else 0.0,
    )
    tracking.log_metrics(
        {
            f"{stage}/best_val_auc": result.best_val_auc,
            f"{stage}/best_epoch": result.best_epoch,
            f"{stage}/epochs_run": result.epochs_run,
            f"{stage}/train_seconds": result.seconds,
            f"{stage}/images_per_second": result.images_per_second,
        },
        parent_run_id,
    )
    logger.info(
        "%s: best val AUC %.4f at epoch %d (%d run)", stage, result.best_val_auc, best + 1, result.epochs_run
    )
    return result


def save(model: keras.Model, result: StageResult, out_dir: str | Path) -> Path:
    """Write ``model.keras`` and ``history.json`` into ``out_dir`` (a KFP Model artifact folder)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / MODEL_FILE)
    (out / HISTORY_FILE).write_text(json.dumps(result.__dict__, indent=2))
    return out / MODEL_FILE


def train_and_save(
    model: keras.Model,
    train_manifest: str,
    val_manifest: str,
    model_dir: str,
    *,
    stage: str,
    note: str,
    lr: float,
    epochs: int,
    patience: int,
    image_size: int,
    batch_size: int,
    augment: bool,
    seed: int,
    parent_run_id: str | None,
    xla: str,
) -> StageResult:
    """What every training step does once its model is built: count, fit, save."""
    trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
    tracking.log_metrics({f"{stage}/trainable_params": trainable})
    logger.info("%s: %d trainable parameters (%s)", stage, trainable, note)
    result = fit_stage(
        model,
        manifest.read(train_manifest),
        manifest.read(val_manifest),
        stage=stage,
        lr=lr,
        epochs=epochs,
        patience=patience,
        image_size=image_size,
        batch_size=batch_size,
        augment=augment,
        seed=seed,
        parent_run_id=parent_run_id,
        xla=xla,
    )
    save(model, result, model_dir)
    return result
