"""MLflow bookkeeping shared by every step: one parent run per pipeline run, one nested run per step.

Steps run in separate processes (and on a cluster in separate pods), so the parent run is
created by the first step and its id travels through the DAG as a plain string. Each step opens
its own child run tagged ``mlflow.parentRunId``; a failing step marks both itself and the parent
FAILED so the MLflow UI never shows a half-finished run as healthy.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient

from melanoma_mlops import EXPERIMENT_NAME
from melanoma_mlops.artifacts import EXPERIMENT_ENV, IMAGE_ENV, IMAGE_ID_ENV, PARENT_TAG
from melanoma_mlops.errors import ConfigError

logger = logging.getLogger(__name__)

LOCAL_STORE = Path("mlruns")


def default_tracking_uri(root: Path | None = None) -> str:
    """The embedded store: SQLite ``mlruns/mlflow.db`` under ``root`` (default: the working directory)."""
    base = (root or Path.cwd()).resolve() / LOCAL_STORE
    return f"sqlite:///{base / 'mlflow.db'}"


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the embedded SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def configure(experiment: str | None = None) -> str:
    """Point MLflow at the tracking store, create the experiment if needed; return its id.

    The experiment defaults to ``melanoma-two-stage``; the ablation pipeline sets
    ``MELANOMA_EXPERIMENT`` on its tasks so the steps it shares with the main DAG file their runs
    under ``melanoma-ablation``.

    With the embedded SQLite store, artifacts go to ``mlruns/artifacts`` beside the database
    rather than MLflow's default ``./mlartifacts`` so the whole store is one folder.
    """
    experiment = experiment or os.environ.get(EXPERIMENT_ENV) or EXPERIMENT_NAME
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        return exp.experiment_id
    artifact_location = None
    if uri.startswith("sqlite:///"):
        store_dir = Path(uri.removeprefix("sqlite:///")).parent
        store_dir.mkdir(parents=True, exist_ok=True)
        artifact_location = (store_dir / "artifacts").resolve().as_uri()
    try:
        return client.create_experiment(experiment, artifact_location=artifact_location)
    except mlflow.exceptions.MlflowException:
        # Another step created it between our lookup and create.
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            raise
        return exp.experiment_id


def start_pipeline_run(run_name: str, tags: Mapping[str, str] | None = None) -> str:
    """Create the parent run of one pipeline run (left RUNNING until :func:`finish_pipeline_run`)."""
    experiment_id = configure()
    run = MlflowClient().create_run(
        experiment_id, run_name=run_name or None, tags={"pipeline": "two-stage", **(tags or {})}
    )
    logger.info("MLflow parent run %s (%s)", run.info.run_id, run.info.run_name)
    return run.info.run_id


def finish_pipeline_run(parent_run_id: str, status: str = "FINISHED") -> None:
    MlflowClient().set_terminated(parent_run_id, status=status)


@contextlib.contextmanager
def step_run(parent_run_id: str, step: str, params: Mapping[str, Any] | None = None) -> Iterator[str]:
    """Open the nested run of one step as the active run; yield its id.

    Params are logged on the step run and on the parent, so the parent alone compares cleanly
    across pipeline runs. An exception fails the step run and the parent run, then propagates.
    """
    experiment_id = configure()
    client = MlflowClient()
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=step,
        parent_run_id=parent_run_id,
        tags={"step": step, **runtime_tags()},
    ) as run:
        if params:
            log_params(params, parent_run_id)
        try:
            yield run.info.run_id
        except BaseException:
            client.set_terminated(parent_run_id, status=RunStatus.to_string(RunStatus.FAILED))
            raise


def runtime_tags() -> dict[str, str]:
    """Where a step ran: in a container (image and image id) or as a process of a virtualenv."""
    image = os.environ.get(IMAGE_ENV, "")
    if image:
        return {
            "runtime": "container",
            "runtime.image": image,
            "runtime.image_id": os.environ.get(IMAGE_ID_ENV, ""),
        }
    return {"runtime": "process"}


def log_params(params: Mapping[str, Any], parent_run_id: str | None = None) -> None:
    """Log params on the active run and, when given, on the parent run too."""
    clean = {k: ("" if v is None else v) for k, v in params.items()}
    mlflow.log_params(clean)
    if parent_run_id:
        client = MlflowClient()
        existing = client.get_run(parent_run_id).data.params
        fresh = {k: v for k, v in clean.items() if k not in existing}
        if fresh:
            client.log_batch(parent_run_id, params=[Param(k, str(v)) for k, v in fresh.items()])


def log_metrics(
    metrics: Mapping[str, float], parent_run_id: str | None = None, step: int | None = None
) -> None:
    """Log metrics on the active run and, when given, on the parent run too."""
    finite = {k: float(v) for k, v in metrics.items() if v is not None}
    mlflow.log_metrics(finite, step=step)
    if parent_run_id:
        now = int(time.time() * 1000)
        MlflowClient().log_batch(
            parent_run_id, metrics=[Metric(k, v, now, step or 0) for k, v in finite.items()]
        )


def set_parent_tags(parent_run_id: str, tags: Mapping[str, str]) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_tag(parent_run_id, key, value)


def log_params_once(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    """Log the params a run does not have yet (MLflow refuses to change a logged param)."""
    existing = client.get_run(run_id).data.params
    fresh = [Param(k, "" if v is None else str(v)) for k, v in params.items() if k not in existing]
    if fresh:
        client.log_batch(run_id, params=fresh)


def log_finite(client: MlflowClient, run_id: str, values: Mapping[str, float | None]) -> None:
    """Log the finite values only (MLflow rejects NaN in some stores and NaN says nothing)."""
    now = int(time.time() * 1000)
    batch = [
        Metric(k, float(v), now, 0) for k, v in values.items() if v is not None and math.isfinite(float(v))
    ]
    for start in range(0, len(batch), 900):  # MLflow caps a batch at 1000 metrics
        client.log_batch(run_id, metrics=batch[start : start + 900])


def descendants(client: MlflowClient, run_id: str, experiment_ids: list[str]) -> list[Any]:
    """Runs nested (at any depth) under ``run_id`` in the given experiments."""
    found: list[Any] = []
    frontier = [run_id]
    while frontier:
        current = frontier.pop()
        children = client.search_runs(experiment_ids, filter_string=f"tags.`{PARENT_TAG}` = {quote(current)}")
        found.extend(children)
        frontier.extend(c.info.run_id for c in children)
    return found


def quote(value: str) -> str:
    """A string literal for an MLflow search filter: never build one with ``f"'{x}'"``.

    MLflow's filter grammar has no escape sequences: a value is quoted with whichever quote
    character it does not contain. A value holding both cannot be searched for, so it is refused
    (the CLI refuses such run names up front).
    """
    text = str(value)
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    raise ConfigError(f"{text!r} contains both ' and \": MLflow cannot search for it; drop one of them")
