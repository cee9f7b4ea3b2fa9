"""Keras callbacks a training step hands to :func:`melanoma_mlops.model.schedules.run` with its
checkpoint: one console line per epoch, and every epoch's metrics to a logging function of the
caller's choice.

Epochs are counted from 1 here, as on the console ("epoch 7/20") and in ``<stage>/best_epoch``. The
model layer knows nothing of MLflow: the step passes the function that records the metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import keras

if TYPE_CHECKING:
    from melanoma_mlops.model.checkpoint import EpochCheckpoint
    from melanoma_mlops.model.schedules import Schedule

logger = logging.getLogger(__name__)


def epoch_callbacks(
    saver: EpochCheckpoint, schedule: Schedule, log: Callable[[dict[str, float], int], None]
) -> list[keras.callbacks.Callback]:
    """A stage's per-epoch callbacks: the checkpoint, the metrics (to ``log``), the console line.

    The checkpoint first: an epoch's metrics are logged only once it is saved, so a kill in between
    leaves no point that the resumed stage would log a second time (and a missing one is copied from
    the checkpoint's history on resume).
    """
    return [
        saver,
        EpochMetrics(schedule.name, log),
        EpochProgress(schedule.name, schedule.epochs, saver.history),
    ]


class EpochMetrics(keras.callbacks.Callback):
    """Hand every epoch's metrics, prefixed by stage (``stage1/val_auc``), to ``log(metrics, epoch)``
    with the epoch counted from 1; the learning rate is left out."""

    def __init__(self, stage: str, log: Callable[[dict[str, float], int], None]) -> None:
        super().__init__()
        self.stage = stage
        self.log = log

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        metrics = {f"{self.stage}/{k}": float(v) for k, v in (logs or {}).items() if k != "learning_rate"}
        self.log(metrics, epoch + 1)


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
