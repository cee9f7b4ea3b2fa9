"""Finished steps, recorded on the parent run, so a continued pipeline run reuses their outputs.

kfp.local cannot resume a DAG: ``melanoma-mlops run --resume RUN`` runs the whole DAG again into the
same MLflow parent run, and each step recognises its own finished work. When a step finishes it
records on the parent run (tag ``step.<name>.done``) where its outputs are and what it returned;
a later run of the same step under the same parent copies those outputs into its own output paths
and returns the recorded value instead of working again. Outputs that no longer exist (pruned, or
on another machine's disk: a cluster pod's local paths) make the step run again.

Training resumes at a finer grain, from its per-epoch checkpoint (:mod:`melanoma_mlops.model.checkpoint`,
kept in the parent run's artifacts so a retried pod on a cluster finds it too).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from melanoma_mlops import tracking

logger = logging.getLogger(__name__)

DONE_TAG = "step.{step}.done"


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
