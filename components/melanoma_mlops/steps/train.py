"""Pipeline steps 4 and 5 (stage1, stage2) and the ablation's single_stage: one schedule each.

Each step opens its nested MLflow run, logs its parameters, trains its schedule with a callback
that logs every epoch's metrics (``stage1/val_auc``, ``stage2/loss`` ...) on the step's run and the
parent run, so two pipeline runs compare cleanly in the MLflow UI. Each epoch ends with a checkpoint
on the parent run, so a stage run again under the same parent continues after its last finished
epoch (:mod:`melanoma_mlops.resume`).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path

from melanoma_mlops import resume, tracking
from melanoma_mlops.config import SingleStageConfig, TrainingConfig
from melanoma_mlops.data import manifest
from melanoma_mlops.model import precision, progress, schedules
from melanoma_mlops.model.checkpoint import EpochCheckpoint, read_state
from melanoma_mlops.model.schedules import Schedule
from melanoma_mlops.model.training import StageResult

logger = logging.getLogger(__name__)


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
) -> StageResult | None:
    outputs = {"model": model_dir}
    if resume.reuse(parent_run_id, schedule.name, outputs) is not None:
        return None
    tracking.log_parent_params(parent_run_id, params)  # on a cluster the steps give the parent its params
    with (
        tracking.step_run(parent_run_id, schedule.name, params) as run_id,
        tempfile.TemporaryDirectory() as tmp,
    ):
        resume.check_space(parent_run_id, not schedule.head_only, tmp, model_dir)  # a full disk: now
        saver = _epoch_checkpoint(parent_run_id, run_id, schedule, Path(tmp))
        result, setup = schedules.run(
            schedule,
            cfg,
            manifest.read(train_manifest),
            manifest.read(val_manifest),
            model_dir,
            seed=seed,
            previous_model_dir=previous_model_dir,
            callbacks=progress.epoch_callbacks(
                saver, schedule, lambda metrics, n: tracking.log_metrics(metrics, parent_run_id, step=n)
            ),
            data_key=tracking.data_fingerprint(parent_run_id),  # the image shards' key
        )
        _log_stage(schedule.name, result, setup, parent_run_id)
        resume.record(parent_run_id, schedule.name, outputs, run_id=run_id)
    resume.drop_checkpoint(parent_run_id, schedule.name)
    return result


def _epoch_checkpoint(parent_run_id: str, run_id: str, schedule: Schedule, tmp: Path) -> EpochCheckpoint:
    """The callback saving (and publishing) each epoch; it resumes from the stage's checkpoint on the
    parent run when there is one, whose earlier epochs' curves are copied onto the new step run."""
    resume_from = resume.download_checkpoint(parent_run_id, schedule.name, tmp / "resume")
    saver = EpochCheckpoint(
        tmp / "checkpoint",
        resume_from=resume_from if resume_from and read_state(resume_from) else None,
        on_saved=resume.checkpoint_publisher(parent_run_id, schedule.name),
    )
    if saver.initial_epoch:
        resume.continue_curves(
            parent_run_id, run_id, schedule.name, saver.history, saver.initial_epoch, schedule.epochs
        )
    return saver


def _log_stage(stage: str, result: StageResult, setup: schedules.Setup, parent_run_id: str) -> None:
    """How the stage trained (on the step's run and the parent, so runs compare on the hardware
    choices too) and its summary metrics (best epoch counted from 1)."""
    tracking.log_params({**setup.params(stage), f"{stage}_gpu": precision.gpu_present()}, parent_run_id)
    tracking.log_metrics({f"{stage}/trainable_params": result.trainable_params})
    if result.epochs_run:
        tracking.log_metrics(result.summary_metrics(stage), parent_run_id)


def stage1_step(
    train_manifest: str,
    val_manifest: str,
    model_dir: str,
    *,
    parent_run_id: str,
    cfg: TrainingConfig,
    seed: int,
) -> StageResult | None:
    """Train only the classification head on a frozen ResNet50; save the model to ``model_dir``."""
    return _train(
        schedules.stage1(cfg), cfg, train_manifest, val_manifest, model_dir,
        parent_run_id=parent_run_id, seed=seed, params=schedules.run_params(cfg, seed),
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
) -> StageResult | None:
    """Fine-tune every layer of the Stage 1 model at a low learning rate; best weights restored."""
    return _train(
        schedules.stage2(cfg), cfg, train_manifest, val_manifest, model_dir,
        parent_run_id=parent_run_id, seed=seed, params=schedules.run_params(cfg, seed),
        previous_model_dir=stage1_model_dir,
    )  # fmt: skip


def single_stage_step(
    train_manifest: str,
    val_manifest: str,
    model_dir: str,
    *,
    parent_run_id: str,
    cfg: TrainingConfig,
    single_stage: SingleStageConfig,
    seed: int,
) -> StageResult | None:
    """Single-stage fine-tuning: the same classifier with every layer trainable from epoch one.

    Everything except the schedule matches the two-stage variant (architecture, weights, dropout,
    augmentation, early stopping on validation AUC, BatchNorm in inference mode when
    ``bn_inference``, precision and XLA switches), so the paired difference measures the schedule
    alone.
    """
    single_stage = dataclasses.replace(single_stage, single_stage_epochs=single_stage.budget(cfg))
    return _train(
        schedules.single_stage(cfg, single_stage.single_stage_lr, single_stage.single_stage_epochs),
        cfg, train_manifest, val_manifest, model_dir,
        parent_run_id=parent_run_id, seed=seed, params=schedules.run_params(cfg, seed, single_stage),
    )  # fmt: skip
