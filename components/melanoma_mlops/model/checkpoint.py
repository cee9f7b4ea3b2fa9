"""Per-epoch training checkpoints: everything needed to continue a stage after a kill.

After every epoch :class:`EpochCheckpoint` writes, into a fresh folder that then replaces the last
one (so a kill mid-write leaves the previous checkpoint intact):

- ``variables.npz``: every variable of the model being fitted (weights, BatchNorm statistics and the
  random-seed state of the augmentation layers);
- ``optimizer.npz``: the optimizer's variables (Adam's moments, the iteration count);
- ``best.npz``: the early-stopping best weights, when the best epoch is not the last one;
- ``state.json``: epochs finished, the metric history, early stopping's counters and the Python and
  NumPy random states.

On :meth:`EpochCheckpoint.on_train_begin` of a resumed fit the same state is put back before the first
batch, and fitting continues at ``initial_epoch`` (a hook of :func:`melanoma_mlops.model.training.fit`).
A stage that is killed therefore loses at most the epoch it was in. The input pipeline's shuffle
order restarts from its seed (tf.data cannot restore an iterator of a new process): a resumed stage
is statistically, not bit-for-bit, the uninterrupted one.

The model layer knows nothing of MLflow: ``on_saved(folder, epochs_done)`` lets the step publish each
checkpoint (to the run's artifact store, so a retried pod on a cluster finds it).

:func:`without_optimizer` saves a stage's output model without its optimizer state (a later stage
compiles its own; only the checkpoint needs it): about 190 MB less per ResNet50 stage.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np

from melanoma_mlops import disk_space

logger = logging.getLogger(__name__)

FORMAT = 1
STATE_FILE = "state.json"
VARIABLES_FILE = "variables.npz"
OPTIMIZER_FILE = "optimizer.npz"
BEST_FILE = "best.npz"


def _save_arrays(path: Path, arrays: list[np.ndarray]) -> None:
    np.savez(path, *arrays)


def _load_arrays(path: Path) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def _numpy(value: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(value))


def read_state(folder: str | Path) -> dict[str, Any] | None:
    """The ``state.json`` of a checkpoint folder, or None when there is no complete checkpoint."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    return state if state.get("format") == FORMAT else None


class EpochCheckpoint(keras.callbacks.Callback):
    """Save the training state after every epoch into ``directory``; restore it when resuming.

    ``resume_from``: a checkpoint folder to continue from (None: a fresh fit). ``on_saved``: called
    with (folder, epochs finished) after each save.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        resume_from: str | Path | None = None,
        on_saved: Callable[[Path, int], None] | None = None,
    ) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.on_saved = on_saved
        self.resume_from = Path(resume_from) if resume_from else None
        self.state = read_state(self.resume_from) if self.resume_from else None
        if self.resume_from and self.state is None:
            logger.warning("no complete checkpoint in %s: training starts from epoch 1", self.resume_from)
        self.early_stopping: keras.callbacks.EarlyStopping | None = None
        self.history: dict[str, list[float]] = {
            k: list(v) for k, v in (self.state or {}).get("history", {}).items()
        }

    # ------------------------------------------------------------------ what fit() asks of it
    @property
    def initial_epoch(self) -> int:
        """Epochs already finished (0 for a fresh fit): ``model.fit(initial_epoch=...)``."""
        return int((self.state or {}).get("epochs_done", 0))

    @property
    def stopped(self) -> bool:
        """Early stopping had ended the stage when the checkpoint was written."""
        return bool((self.state or {}).get("stopped", False))

    def track(self, early_stopping: keras.callbacks.EarlyStopping) -> None:
        """Save and restore this early-stopping callback's state with the weights."""
        self.early_stopping = early_stopping

    def full_history(self, fitted: dict[str, list[float]]) -> dict[str, list[float]]:
        """The history of the epochs before the resume followed by ``fitted`` (this fit's)."""
        if not self.state:
            return fitted
        before = self.state.get("history", {})
        keys = list(dict.fromkeys([*before, *fitted]))
        return {k: [*before.get(k, []), *fitted.get(k, [])] for k in keys}

    # ------------------------------------------------------------------ Keras hooks
    def on_train_begin(self, logs: dict | None = None) -> None:
        if not self.state or self.resume_from is None:
            return
        model = self.model
        variables = _load_arrays(self.resume_from / VARIABLES_FILE)
        if len(variables) != len(model.variables):
            raise ValueError(
                f"checkpoint {self.resume_from} holds {len(variables)} variables, the model has "
                f"{len(model.variables)}: it belongs to another model"
            )
        for var, value in zip(model.variables, variables, strict=True):
            var.assign(value)
        optimizer = model.optimizer
        if optimizer is not None and (self.resume_from / OPTIMIZER_FILE).is_file():
            if not optimizer.built:
                optimizer.build(model.trainable_variables)
            saved = _load_arrays(self.resume_from / OPTIMIZER_FILE)
            if len(saved) == len(optimizer.variables):
                for var, value in zip(optimizer.variables, saved, strict=True):
                    var.assign(value)
            else:
                logger.warning(
                    "optimizer state does not match (%d vs %d variables): Adam restarts",
                    len(saved),
                    len(optimizer.variables),
                )
        stopper = self.early_stopping
        es = self.state.get("early_stopping") or {}
        if stopper is not None and es:
            stopper.wait = int(es.get("wait", 0))
            stopper.best = es.get("best")
            stopper.best_epoch = int(es.get("best_epoch", 0))
            if (self.resume_from / BEST_FILE).is_file():
                stopper.best_weights = _load_arrays(self.resume_from / BEST_FILE)
            elif es.get("best_is_last"):
                stopper.best_weights = model.get_weights()
        rng = self.state.get("rng") or {}
        if "python" in rng:
            random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))
        if "numpy" in rng:
            kind, keys, pos, has_gauss, cached = rng["numpy"]
            np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
        logger.info("resumed from the checkpoint after epoch %d", self.initial_epoch)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.save(epoch + 1)

    # ------------------------------------------------------------------ writing
    def save(self, epochs_done: int) -> Path:
        """Write the checkpoint into a fresh folder, then swap it in; a failed write (a full disk)
        removes the half-written folder and leaves the previous checkpoint as it was."""
        tmp = self.directory.with_name(self.directory.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        with disk_space.removing_on_failure(tmp):
            tmp.mkdir(parents=True)
            self._write(tmp, epochs_done)
        shutil.rmtree(self.directory, ignore_errors=True)
        tmp.rename(self.directory)
        if self.on_saved is not None:
            self.on_saved(self.directory, epochs_done)
        return self.directory

    def _write(self, tmp: Path, epochs_done: int) -> None:
        model = self.model
        _save_arrays(tmp / VARIABLES_FILE, [_numpy(v) for v in model.variables])
        if model.optimizer is not None and model.optimizer.built:
            _save_arrays(tmp / OPTIMIZER_FILE, [_numpy(v) for v in model.optimizer.variables])
        es: dict[str, Any] = {}
        stopper = self.early_stopping
        if stopper is not None:
            best_is_last = stopper.best_epoch == epochs_done - 1
            es = {
                "wait": int(stopper.wait),
                "best": None if stopper.best is None else float(stopper.best),
                "best_epoch": int(stopper.best_epoch),
                "best_is_last": best_is_last,
            }
            if stopper.best_weights is not None and not best_is_last:
                _save_arrays(tmp / BEST_FILE, list(stopper.best_weights))
        py_state = random.getstate()
        np_state = np.random.get_state()
        state = {
            "format": FORMAT,
            "epochs_done": epochs_done,
            "stopped": bool(getattr(model, "stop_training", False)),
            "history": self.history,
            "early_stopping": es,
            "rng": {
                "python": [py_state[0], list(py_state[1]), py_state[2]],
                "numpy": [
                    np_state[0],
                    np_state[1].tolist(),
                    int(np_state[2]),
                    int(np_state[3]),
                    float(np_state[4]),
                ],
            },
        }
        # state.json last: a folder without it is an incomplete checkpoint and is never read.
        (tmp / STATE_FILE).write_text(json.dumps(state))


@contextlib.contextmanager
def without_optimizer(model: keras.Model) -> Iterator[keras.Model]:
    """``model`` with its optimizer detached, for saving a stage's output without optimizer state.

    (Keras 3 ignores ``include_optimizer=False`` for ``.keras`` files; loading uses
    ``compile=False``, so the missing state is never looked for.)
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        yield model
        return
    model.optimizer = None
    try:
        yield model
    finally:
        model.optimizer = optimizer
