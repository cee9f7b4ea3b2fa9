"""Finished steps, recorded on the parent run, so a continued pipeline run reuses their outputs.

kfp.local cannot resume a DAG: ``melanoma-mlops run --resume RUN`` runs the whole DAG again into the
same MLflow parent run, and each step recognises its own finished work. When a step finishes it
records on the parent run (tag ``step.<name>.done``) where its outputs are and what it returned;
a later run of the same step under the same parent copies those outputs into its own output paths
and returns the recorded value instead of working again. Outputs that no longer exist (pruned, or
on another machine's disk: a cluster pod's local paths) make the step run again.

Training resumes at a finer grain, from its per-epoch checkpoint (:mod:`melanoma_mlops.model.checkpoint`).
Each checkpoint is published to the parent run's artifacts (``checkpoints/<stage>/epoch-N``, the tag
``checkpoint.<stage>`` naming the newest complete one), so a stage that is run again under the same
parent - ``run --resume`` locally, a KFP retry of the pod on a cluster - continues after its last
finished epoch. The earlier epochs' metrics are copied onto the new step run (and any missing on the
parent), so the curves have no gap. The checkpoint is deleted when the stage finishes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from melanoma_mlops import artifact_cleanup, disk_space, tracking

logger = logging.getLogger(__name__)

DONE_TAG = "step.{step}.done"
CHECKPOINT_TAG = "checkpoint.{stage}"
CHECKPOINT_DIR = "checkpoints"


@dataclass(frozen=True)
class Finished:
    """A step's record: its outputs (name -> path), its return value, the run that did the work."""

    outputs: dict[str, str]
    value: Any
    run_id: str


def done_tag(step: str) -> str:
    return DONE_TAG.format(step=step)


def record(
    parent_run_id: str, step: str, outputs: Mapping[str, str], value: Any = None, run_id: str = ""
) -> None:
    """Record ``step`` as finished on the parent run (its outputs, return value, the step run)."""
    payload = {
        "outputs": {k: str(Path(v).resolve()) for k, v in outputs.items()},
        "value": value,
        "run_id": run_id,
    }
    MlflowClient().set_tag(parent_run_id, done_tag(step), tracking.dumps_tag(payload))


def recorded(parent_run_id: str, step: str) -> Finished | None:
    raw = MlflowClient().get_run(parent_run_id).data.tags.get(done_tag(step))
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        logger.warning("%s: unreadable finished-step record on run %s: running it again", step, parent_run_id)
        return None
    return Finished(dict(data.get("outputs", {})), data.get("value"), str(data.get("run_id", "")))


def _copy(src: Path, dst: Path) -> None:
    """Copy a file or folder; hard links where the file system allows (outputs are never edited)."""
    if src.resolve() == dst.resolve():
        return
    if dst.is_dir():
        shutil.rmtree(dst)
    elif dst.exists():
        dst.unlink()
    dst.parent.mkdir(parents=True, exist_ok=True)

    def link_or_copy(a: str, b: str) -> Any:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)
        return b

    if src.is_dir():
        shutil.copytree(src, dst, copy_function=link_or_copy)
    else:
        link_or_copy(str(src), str(dst))


def reuse(parent_run_id: str, step: str, outputs: Mapping[str, str]) -> Finished | None:
    """If ``step`` finished under this parent and its outputs still exist, copy them to ``outputs``.

    Returns the record (its ``value`` is what the step returned), or None when the step must run.
    """
    done = recorded(parent_run_id, step)
    if done is None:
        return None
    missing = [name for name in outputs if not Path(done.outputs.get(name, "")).exists()]
    if missing:
        logger.warning(
            "%s finished in an earlier attempt of this run, but its outputs %s are gone: running it again",
            step,
            ", ".join(missing),
        )
        return None
    for name, path in outputs.items():
        _copy(Path(done.outputs[name]), Path(path))
    logger.info(
        "%s: finished in an earlier attempt of this run (MLflow run %s): reusing its outputs",
        step,
        done.run_id,
    )
    return done


# ------------------------------------------------------------------ a stage's epoch checkpoints
def checkpoint_publisher(parent_run_id: str, stage: str) -> Callable[[Path, int], None]:
    """Upload each checkpoint to the parent run, then point the stage's tag at it."""
    client = MlflowClient()
    tag = CHECKPOINT_TAG.format(stage=stage)

    def publish(folder: Path, epochs_done: int) -> None:
        previous = client.get_run(parent_run_id).data.tags.get(tag, "")
        path = f"{CHECKPOINT_DIR}/{stage}/epoch-{epochs_done}"
        artifact_cleanup.upload_or_remove(parent_run_id, str(folder), path)  # a failed upload leaves none
        client.set_tag(parent_run_id, tag, path)  # only a complete upload is ever pointed at
        if previous and previous != path:
            try:
                artifact_cleanup.delete_artifacts(parent_run_id, previous)
            except Exception as exc:  # noqa: BLE001 - an old checkpoint left behind is only disk space
                logger.warning("could not delete the previous checkpoint %s: %s", previous, exc)

    return publish


def check_space(parent_run_id: str, all_layers: bool, tmp_dir: str, model_dir: str) -> None:
    """Refuse to start a stage whose checkpoints and model do not fit where they go (the temporary
    folder, the model folder, the parent run's artifact store): a full disk found before, not by a
    write half-way (:mod:`melanoma_mlops.disk_space`)."""
    store = MlflowClient().get_run(parent_run_id).info.artifact_uri
    disk_space.check(disk_space.stage_needs(all_layers, tmp_dir, model_dir, store))


def download_checkpoint(parent_run_id: str, stage: str, into: Path) -> Path | None:
    """The folder of the stage's newest checkpoint from the parent run, or None when it has none."""
    path = MlflowClient().get_run(parent_run_id).data.tags.get(CHECKPOINT_TAG.format(stage=stage), "")
    if not path:
        return None
    try:
        local = MlflowClient().download_artifacts(parent_run_id, path, str(into))
    except Exception as exc:  # noqa: BLE001 - a missing checkpoint means starting the stage over
        logger.warning("%s: checkpoint %s could not be read (%s): starting from epoch 1", stage, path, exc)
        return None
    return Path(local)


def continue_curves(
    parent_run_id: str, run_id: str, stage: str, history: dict[str, list[float]], done: int, epochs: int
) -> None:
    """A stage resumed after epoch ``done`` of ``epochs``: say so, then copy the epochs before the
    resume onto the new step run, and onto the parent where missing."""
    logger.info(
        "%s: resuming after epoch %d of %d (checkpoint on MLflow run %s)", stage, done, epochs, parent_run_id
    )
    client = MlflowClient()
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


def drop_checkpoint(parent_run_id: str, stage: str) -> None:
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
