"""Pipeline steps 4 and 5 (stage1, stage2) and the ablation's single_stage: one schedule each.

Each step opens its nested MLflow run, logs its parameters, trains its schedule with a callback
that logs every epoch's metrics (``stage1/val_auc``, ``stage2/loss`` ...) on the step's run and the
parent run, so two pipeline runs compare cleanly in the MLflow UI.
"""

from __future__ import annotations

import logging

import keras
from mlflow.tracking import MlflowClient

from melanoma_mlops import tracking
from melanoma_mlops.config import TrainingConfig
from melanoma_mlops.data import manifest
from melanoma_mlops.model import precision, schedules
from melanoma_mlops.model.schedules import Schedule
from melanoma_mlops.model.training import StageResult

logger = logging.getLogger(__name__)


class MlflowEpochLogger(keras.callbacks.Callback):
    """Log every epoch's metrics to the active MLflow run and the parent, prefixed by stage."""

    def __init__(self, stage: str, parent_run_id: str | None) -> None:
        super().__init__()
        self.stage = stage
        self.parent_run_id = parent_run_id

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        metrics = {f"{self.stage}/{k}": float(v) for k, v in (logs or {}).items() if k != "learning_rate"}
        tracking.log_metrics(metrics, self.parent_run_id, step=epoch)


def data_fingerprint(parent_run_id: str) -> str:
    """The validated data set's fingerprint (the parent run's tag; '' when absent): the shards' key."""
    return MlflowClient().get_run(parent_run_id).data.tags.get("data.fingerprint", "")


def _train(
    schedule: Schedule,
    cfg: TrainingConfig,
    train_manifest: str,
    val_manifest: str,
    model_dir: str,
    *,
    parent_run_id: str,
    seed: int,
    params: dict[str, object],
    previous_model_dir: str | None = None,
) -> StageResult:
    with tracking.step_run(parent_run_id, schedule.name, params):
        result, setup = schedules.run(
            schedule,
            cfg,
            manifest.read(train_manifest),
            manifest.read(val_manifest),
            model_dir,
            seed=seed,
            previous_model_dir=previous_model_dir,
            callbacks=[MlflowEpochLogger(schedule.name, parent_run_id)],
            data_key=data_fingerprint(parent_run_id),
        )
        # On the step's run and the parent, so runs compare on the hardware choices too.
        tracking.log_params(
            {**setup.params(schedule.name), f"{schedule.name}_gpu": precision.gpu_present()}, parent_run_id
        )
        tracking.log_metrics({f"{schedule.name}/trainable_params": result.trainable_params})
        if result.epochs_run:
            tracking.log_metrics(result.summary_metrics(schedule.name), parent_run_id)
        return result


def _shared_params(cfg: TrainingConfig, seed: int) -> dict[str, object]:
    return {
        "image_size": cfg.image_size,
        "batch_size": cfg.batch_size,
        "weights": cfg.weights,
        "dropout": cfg.dropout,
        "augment": cfg.augment,
        "patience": cfg.patience,
        "seed": seed,
        "mixed_precision": cfg.mixed_precision,
        "xla": cfg.xla,
        "deterministic": cfg.deterministic,
        "image_cache": cfg.image_cache,
        "shard_root": cfg.shard_root,
    }


def stage1_step(
    train_manifest: str,
    val_manifest: str,
    model_dir: str,
    *,
    parent_run_id: str,
    cfg: TrainingConfig,
    seed: int,
) -> StageResult:
    """Train only the classification head on a frozen ResNet50; save the model to ``model_dir``."""
    params = {**_shared_params(cfg, seed), "stage1_lr": cfg.stage1_lr, "stage1_epochs": cfg.stage1_epochs}
    return _train(
        schedules.stage1(cfg), cfg, train_manifest, val_manifest, model_dir,
        parent_run_id=parent_run_id, seed=seed, params=params,
    )  # fmt: skip


def stage2_step(
    stage1_model_dir: str,
    train_manifest: str,
    val_manifest: str,
    model_dir: str,
    *,
    parent_run_id: str,
    cfg: TrainingConfig,
    seed: int,
) -> StageResult:
    """Fine-tune every layer of the Stage 1 model at a low learning rate; best weights restored."""
    params = {
        "stage2_lr": cfg.stage2_lr,
        "stage2_epochs": cfg.stage2_epochs,
        "bn_inference": cfg.bn_inference,
    }
    return _train(
        schedules.stage2(cfg), cfg, train_manifest, val_manifest, model_dir,
        parent_run_id=parent_run_id, seed=seed, params=params, previous_model_dir=stage1_model_dir,
    )  # fmt: skip


def single_stage_step(
    train_manifest: str,
    val_manifest: str,
    model_dir: str,
    *,
    parent_run_id: str,
    cfg: TrainingConfig,
    lr: float,
    epochs: int,
    seed: int,
) -> StageResult:
    """Single-stage fine-tuning: the same classifier with every layer trainable from epoch one.

    Everything except the schedule matches the two-stage variant (architecture, weights, dropout,
    augmentation, early stopping on validation AUC, BatchNorm in inference mode when
    ``bn_inference``, precision and XLA switches), so the paired difference measures the schedule
    alone.
    """
    params = {
        **_shared_params(cfg, seed),
        "single_stage_lr": lr,
        "single_stage_epochs": epochs,
        "bn_inference": cfg.bn_inference,
    }
    return _train(
        schedules.single_stage(cfg, lr, epochs), cfg, train_manifest, val_manifest, model_dir,
        parent_run_id=parent_run_id, seed=seed, params=params,
    )  # fmt: skip
