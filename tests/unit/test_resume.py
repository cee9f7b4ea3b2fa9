"""Resuming (issue 11): finished steps recorded on the parent run are reused; training continues from
its per-epoch checkpoint with the weights, the optimizer, early stopping and the history it had."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

from melanoma_mlops import resume, tracking
from melanoma_mlops.model import checkpoint


# ------------------------------------------------------------------------------ finished steps
def test_a_finished_step_is_reused_from_its_recorded_outputs(mlflow_store: str, tmp_path: Path) -> None:
    parent = tracking.start_pipeline_run("resumable")
    first = tmp_path / "attempt1"
    (first / "model").mkdir(parents=True)
    (first / "model" / "model.keras").write_bytes(b"weights")
    (first / "train").write_text("image_uri,label\n")
    resume.record(
        parent, "stage1", {"model": first / "model", "train": first / "train"}, {"n": 3}, run_id="r1"
    )
    second = tmp_path / "attempt2"
    done = resume.reuse(parent, "stage1", {"model": str(second / "model"), "train": str(second / "train")})
    assert done is not None and done.value == {"n": 3} and done.run_id == "r1"
    assert (second / "model" / "model.keras").read_bytes() == b"weights"
    assert (second / "train").read_text() == "image_uri,label\n"
    assert resume.reuse(parent, "split", {"train": str(second / "x")}) is None  # never finished


def test_a_step_whose_outputs_are_gone_runs_again(mlflow_store: str, tmp_path: Path) -> None:
    parent = tracking.start_pipeline_run("pruned")
    resume.record(parent, "evaluate", {"evaluation": tmp_path / "pruned-away"})
    assert resume.reuse(parent, "evaluate", {"evaluation": str(tmp_path / "new")}) is None


# ------------------------------------------------------------------------------ checkpoints
def _data(n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8)).astype("float32")
    return x, (x[:, 0] > 0).astype("float32")


def _model() -> keras.Model:
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dropout(0.2), keras.layers.Dense(1, "sigmoid")])
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc")],
    )
    return model


def _fit(model: keras.Model, saver: checkpoint.EpochCheckpoint, epochs: int, patience: int = 10) -> dict:
    """What model/training.fit does with a checkpoint among its callbacks (its resume hooks)."""
    x, y = _data()
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_auc", mode="max", patience=patience, restore_best_weights=True
    )
    saver.track(stopper)
    history = model.fit(
        x, y, validation_data=(x, y), epochs=epochs, batch_size=16, verbose=0,
        callbacks=[stopper, saver], initial_epoch=saver.initial_epoch, shuffle=False,
    ).history  # fmt: skip
    return saver.full_history(history)


def test_a_resumed_fit_continues_where_the_checkpoint_left_off(tmp_path: Path) -> None:
    saved: list[int] = []
    first = _model()
    _fit(
        first, checkpoint.EpochCheckpoint(tmp_path / "ckpt", on_saved=lambda _, n: saved.append(n)), epochs=2
    )
    assert saved == [1, 2]
    state = checkpoint.read_state(tmp_path / "ckpt")
    assert state["epochs_done"] == 2 and len(state["history"]["val_auc"]) == 2
    iterations = int(first.optimizer.iterations.numpy())
    weights = [w.copy() for w in first.get_weights()]

    # A new process: a freshly built model, the checkpoint put back before the first batch.
    second = _model()
    saver = checkpoint.EpochCheckpoint(tmp_path / "ckpt2", resume_from=tmp_path / "ckpt")
    assert saver.initial_epoch == 2
    seen: list[int] = []

    class FirstBatch(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if not seen:
                seen.append(int(self.model.optimizer.iterations.numpy()))
                for a, b in zip(self.model.get_weights(), weights, strict=True):
                    np.testing.assert_array_equal(a, b)

    x, y = _data()
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_auc", mode="max", patience=10, restore_best_weights=True
    )
    saver.track(stopper)
    fitted = second.fit(
        x, y, validation_data=(x, y), epochs=4, batch_size=16, verbose=0, shuffle=False,
        callbacks=[stopper, saver, FirstBatch()], initial_epoch=saver.initial_epoch,
    ).history  # fmt: skip
    history = saver.full_history(fitted)
    assert seen == [iterations]  # Adam's step count (and moments) carried on
    assert len(fitted["val_auc"]) == 2 and len(history["val_auc"]) == 4  # epochs 3 and 4 only, no gap
    assert history["val_auc"][:2] == state["history"]["val_auc"]
    assert checkpoint.read_state(tmp_path / "ckpt2")["epochs_done"] == 4


def test_early_stopping_state_survives_a_resume(tmp_path: Path) -> None:
    model = _model()
    saver = checkpoint.EpochCheckpoint(tmp_path / "ckpt")
    _fit(model, saver, epochs=3)
    es = checkpoint.read_state(tmp_path / "ckpt")["early_stopping"]
    resumed = checkpoint.EpochCheckpoint(tmp_path / "next", resume_from=tmp_path / "ckpt")
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_auc", mode="max", patience=10, restore_best_weights=True
    )
    resumed.track(stopper)
    resumed.set_model(_model())
    stopper.set_model(resumed.model)
    stopper.on_train_begin()
    resumed.on_train_begin()
    assert (stopper.best, stopper.best_epoch, stopper.wait) == (es["best"], es["best_epoch"], es["wait"])
    assert stopper.best_weights is not None


def test_a_checkpoint_written_after_early_stopping_ends_the_stage(tmp_path: Path) -> None:
    _fit(_model(), checkpoint.EpochCheckpoint(tmp_path / "ckpt"), epochs=1)
    state = checkpoint.read_state(tmp_path / "ckpt")
    state["stopped"] = True
    (tmp_path / "ckpt" / checkpoint.STATE_FILE).write_text(json.dumps(state))
    assert checkpoint.EpochCheckpoint(tmp_path / "x", resume_from=tmp_path / "ckpt").stopped


def test_an_incomplete_checkpoint_is_never_read(tmp_path: Path) -> None:
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / checkpoint.VARIABLES_FILE).write_bytes(b"partial")
    saver = checkpoint.EpochCheckpoint(tmp_path / "x", resume_from=tmp_path / "half")
    assert saver.initial_epoch == 0 and saver.state is None


def test_a_stage_output_keeps_no_optimizer_state(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((100,)), keras.layers.Dense(500), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.zeros((4, 100)), np.zeros((4, 1)), verbose=0)
    model.save(tmp_path / "with.keras")
    with checkpoint.without_optimizer(model):
        model.save(tmp_path / "without.keras")
    assert model.optimizer is not None  # put back for whoever continues training
    assert (tmp_path / "without.keras").stat().st_size < 0.6 * (tmp_path / "with.keras").stat().st_size
    loaded = keras.models.load_model(tmp_path / "without.keras", compile=False)
    np.testing.assert_allclose(
        loaded.predict(np.ones((1, 100)), verbose=0), model.predict(np.ones((1, 100)), verbose=0)
    )
