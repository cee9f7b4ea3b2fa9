"""Pipeline steps 4 and 5 (stage1, stage2) and the ablation's single_stage: one schedule each.

Each step opens its nested MLflow run, logs its parameters, trains its schedule with a callback
that logs every epoch's metrics (``stage1/val_auc``, ``stage2/loss`` ...) on the step's run and the
parent run, so two pipeline runs compare cleanly in the MLflow UI.

Epochs are counted from 1 everywhere: the console ("epoch 7/20"), the MLflow step of each epoch's
metrics and ``<stage>/best_epoch``.

Each epoch ends with a checkpoint (:mod:`melanoma_mlops.model.checkpoint`) published to the parent
run's artifacts (``checkpoints/<stage>/epoch-N``, the tag ``checkpoint.<stage>`` naming the newest
complete one), so a stage that is run again under the same parent - ``run --resume`` locally, a KFP
retry of the pod on a cluster - continues after its last finished epoch. The earlier epochs'
metrics are copied onto the new step run (and any missing on the parent), so the curves have no
gap. The checkpoint is deleted when the stage finishes.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import keras
import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from melanoma_mlops import artifact_cleanup, disk_space, resume, tracking
from melanoma_mlops.config import ConfigGroup, SingleStageConfig, TrainingConfig
from melanoma_mlops.data import manifest
from melanoma_mlops.model import checkpoint, precision, schedules
from melanoma_mlops.model.schedules import Schedule
from melanoma_mlops.model.training import StageResult

logger = logging.getLogger(__name__)

CHECKPOINT_TAG = "checkpoint.{stage}"
CHECKPOINT_DIR = "checkpoints"


class MlflowEpochLogger(keras.callbacks.Callback):
    """Log every epoch's metrics to the active MLflow run and the parent, prefixed by stage.

    The MLflow step of an epoch is its number counted from 1 (the console's and best_epoch's).
    """

    def __init__(self, stage: str, parent_run_id: str | None) -> None:
        super().__init__()
        self.stage = stage
        self.parent_run_id = parent_run_id

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        metrics = {f"{self.stage}/{k}": float(v) for k, v in (logs or {}).items() if k != "learning_rate"}
        tracking.log_metrics(metrics, self.parent_run_id, step=epoch + 1)


class EpochProgress(keras.callbacks.Callback):
    """One console line per epoch: the figures, the best so far, the time and the stage's ETA."""

    def __init__(self, stage: str, epochs: int, history: dict[str, list[float]] | None = None) -> None:
        super().__init__()
        self.stage = stage
        self.epochs = epochs
        self.best = float("-inf")
        self.best_epoch = 0
        for epoch, value in enumerate((history or {}).get("val_auc", []), start=1):
            if value > self.best:  # the epochs before a resume
                self.best, self.best_epoch = value, epoch
        self.times: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        self.times.append(time.perf_counter() - self._start)
        val_auc = float(logs.get("val_auc", float("nan")))
        if val_auc > self.best:
            self.best, self.best_epoch = val_auc, epoch + 1
        remaining = self.epochs - (epoch + 1)
        eta = remaining * sum(self.times) / len(self.times)
        logger.info(
            "%s epoch %d/%d: loss %.4f, AUC %.4f, val loss %.4f, val AUC %.4f (best %.4f at epoch %d) "
            "in %.0f s; %s",
            self.stage,
            epoch + 1,
            self.epochs,
            float(logs.get("loss", float("nan"))),
            float(logs.get("auc", float("nan"))),
            float(logs.get("val_loss", float("nan"))),
            val_auc,
            self.best,
            self.best_epoch,
            self.times[-1],
            f"stage ETA at most {_minutes(eta)} ({remaining} epoch{'s' if remaining > 1 else ''} left, "
            "early stopping may end it sooner)"
            if remaining
            else "last epoch",
        )


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _publisher(parent_run_id: str, stage: str) -> Callable[[Path, int], None]:
    """Upload each checkpoint to the parent run, then point the stage's tag at it."""
    client = MlflowClient()
    tag = CHECKPOINT_TAG.format(stage=stage)

    def publish(folder: Path, epochs_done: int) -> None:
        previous = client.get_run(parent_run_id).data.tags.get(tag, "")
        path = f"{CHECKPOINT_DIR}/{stage}/epoch-{epochs_done}"
        artifact_cleanup.upload_or_remove(parent_run_id, str(folder), path)
        client.set_tag(parent_run_id, tag, path)  # only a complete upload is ever pointed at
        if previous and previous != path:
            try:
                artifact_cleanup.delete_artifacts(parent_run_id, previous)
            except Exception as exc:  # noqa: BLE001 - an old checkpoint left behind is only disk space
                logger.warning("could not delete the previous checkpoint %s: %s", previous, exc)

    return publish


def _download_checkpoint(parent_run_id: str, stage: str, into: Path) -> Path | None:
    """The stage's newest checkpoint from the parent run, or None when it has none."""
    path = MlflowClient().get_run(parent_run_id).data.tags.get(CHECKPOINT_TAG.format(stage=stage), "")
    if not path:
        return None
    try:
        local = MlflowClient().download_artifacts(parent_run_id, path, str(into))
    except Exception as exc:  # noqa: BLE001 - a missing checkpoint means starting the stage over
        logger.warning("%s: checkpoint %s could not be read (%s): starting from epoch 1", stage, path, exc)
        return None
    return Path(local) if checkpoint.read_state(local) else None


def _continue_curves(parent_run_id: str, stage: str, history: dict[str, list[float]]) -> None:
    """Copy the epochs before a resume onto the new step run, and onto the parent where missing."""
    client = MlflowClient()
    run_id = mlflow.active_run().info.run_id
    now = int(time.time() * 1000)
    mine: list[Metric] = []
    missing: list[Metric] = []
    for key, values in history.items():
        if key == "learning_rate":
            continue
        name = f"{stage}/{key}"
        on_parent = {m.step for m in client.get_metric_history(parent_run_id, name)}
        for epoch, value in enumerate(values, start=1):
            metric = Metric(name, float(value), now, epoch)
            mine.append(metric)
            if epoch not in on_parent:
                missing.append(metric)
    for target, batch in ((run_id, mine), (parent_run_id, missing)):
        for start in range(0, len(batch), 900):
            client.log_batch(target, metrics=batch[start : start + 900])


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
) -> StageResult | None:
    outputs = {"model": model_dir}
    if resume.reuse(parent_run_id, schedule.name, outputs) is not None:
        return None
    tracking.log_parent_params(parent_run_id, params)  # on a cluster the steps give the parent its params
    with (
        tracking.step_run(parent_run_id, schedule.name, params) as run_id,
        tempfile.TemporaryDirectory() as tmp,
    ):
        artifacts = MlflowClient().get_run(parent_run_id).info.artifact_uri
        disk_space.check(disk_space.stage_needs(not schedule.head_only, tmp, model_dir, artifacts))
        saver = _epoch_checkpoint(parent_run_id, schedule, Path(tmp))
        result, setup = schedules.run(
            schedule,
            cfg,
            manifest.read(train_manifest),
            manifest.read(val_manifest),
            model_dir,
            seed=seed,
            previous_model_dir=previous_model_dir,
            # The checkpoint first: an epoch's metrics are logged only once it is saved, so a kill
            # in between leaves no point that the resumed stage would log a second time (and a
            # missing one is copied from the checkpoint's history on resume).
            callbacks=[
                saver,
                MlflowEpochLogger(schedule.name, parent_run_id),
                EpochProgress(schedule.name, schedule.epochs, saver.history),
            ],
            data_key=data_fingerprint(parent_run_id),
        )
        _log_stage(schedule.name, result, setup, parent_run_id)
        resume.record(parent_run_id, schedule.name, outputs, run_id=run_id)
    _drop_checkpoint(parent_run_id, schedule.name)
    return result


def _epoch_checkpoint(parent_run_id: str, schedule: Schedule, tmp: Path) -> checkpoint.EpochCheckpoint:
    """The callback saving (and publishing) each epoch; it resumes from the stage's checkpoint on the
    parent run when there is one, whose earlier epochs' curves are copied onto the new step run."""
    resume_from = _download_checkpoint(parent_run_id, schedule.name, tmp / "resume")
    saver = checkpoint.EpochCheckpoint(
        tmp / "checkpoint",
        resume_from=resume_from,
        on_saved=_publisher(parent_run_id, schedule.name),
    )
    if saver.initial_epoch:
        logger.info(
            "%s: resuming after epoch %d of %d (checkpoint on MLflow run %s)",
            schedule.name,
            saver.initial_epoch,
            schedule.epochs,
            parent_run_id,
        )
        _continue_curves(parent_run_id, schedule.name, saver.history)
    return saver


def _log_stage(stage: str, result: StageResult, setup: schedules.Setup, parent_run_id: str) -> None:
    """How the stage trained and its summary metrics (best epoch counted from 1), on the step's run
    and the parent."""
    # On the step's run and the parent, so runs compare on the hardware choices too.
    tracking.log_params({**setup.params(stage), f"{stage}_gpu": precision.gpu_present()}, parent_run_id)
    tracking.log_metrics({f"{stage}/trainable_params": result.trainable_params})
    if result.epochs_run:
        summary = result.summary_metrics(stage)
        summary[f"{stage}/best_epoch"] = result.best_epoch + 1  # counted from 1
        tracking.log_metrics(summary, parent_run_id)


def _drop_checkpoint(parent_run_id: str, stage: str) -> None:
    """The stage finished: its checkpoint is no longer needed (its output model is)."""
    client = MlflowClient()
    tag = CHECKPOINT_TAG.format(stage=stage)
    if not client.get_run(parent_run_id).data.tags.get(tag):
        return
    try:
        artifact_cleanup.delete_artifacts(parent_run_id, f"{CHECKPOINT_DIR}/{stage}")
        if not client.list_artifacts(parent_run_id, CHECKPOINT_DIR):
            artifact_cleanup.delete_artifacts(parent_run_id, CHECKPOINT_DIR)
    except Exception as exc:  # noqa: BLE001 - leftover files cost disk space, not correctness
        logger.warning("could not delete the %s checkpoint: %s", stage, exc)
    client.delete_tag(parent_run_id, tag)


def _params(cfg: TrainingConfig, seed: int, *extra: ConfigGroup) -> dict[str, object]:
    """A stage run's params: every training setting (and the seed, and any other group it reads)."""
    return {**cfg.as_params(), "seed": seed, **{k: v for g in extra for k, v in g.as_params().items()}}


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
        parent_run_id=parent_run_id, seed=seed, params=_params(cfg, seed),
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
        parent_run_id=parent_run_id, seed=seed, params=_params(cfg, seed),
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
        parent_run_id=parent_run_id, seed=seed, params=_params(cfg, seed, single_stage),
    )  # fmt: skip
