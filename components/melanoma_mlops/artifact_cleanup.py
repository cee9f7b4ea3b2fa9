"""Removing files from the artifact store: a run's obsolete checkpoints, a failed upload's or a
failed model's partial files.

An upload that fails half-way (the store's disk full) leaves none of its files
(:func:`upload_or_remove`), nor does a registration (:func:`removing_failed_models`; docs/faults.md,
"Full disks").
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from melanoma_mlops.tracking import best_effort, quote
from melanoma_mlops.tracking_client import quick_fail

logger = logging.getLogger(__name__)


def delete_artifacts(run_id: str, path: str) -> None:
    """Delete ``path`` below a run's artifacts (a local folder, S3, or the server's proxy)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    run = MlflowClient().get_run(run_id)
    get_artifact_repository(run.info.artifact_uri).delete_artifacts(path)


def upload_or_remove(run_id: str, local_dir: str, artifact_path: str) -> None:
    """Upload a folder to a run's artifacts; if that fails, delete what reached the store.

    A checkpoint is hundreds of MB: half of one left in the store keeps a full disk full.
    """
    client = MlflowClient()
    try:
        client.log_artifacts(run_id, local_dir, artifact_path)
    except BaseException:
        with quick_fail():
            try:
                delete_artifacts(run_id, artifact_path)
                logger.warning("removed the partial upload %s of run %s", artifact_path, run_id)
            except Exception as exc:  # noqa: BLE001 - report what could not be removed; the failure wins
                logger.warning("could not remove the partial upload %s: %s", artifact_path, exc)
        raise


def _delete_logged_model_files(client: MlflowClient, model: Any) -> None:
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    try:
        get_artifact_repository(model.artifact_location).delete_artifacts()
    except Exception as exc:  # noqa: BLE001 - report what could not be removed; the failure wins
        logger.warning("could not delete the partial files of model %s: %s", model.model_id, exc)
    best_effort(f"delete the logged model {model.model_id}", client.delete_logged_model, model.model_id)


@contextlib.contextmanager
def removing_failed_models() -> Iterator[None]:
    """Log a model inside; if that fails, delete the partial files of the models it left behind.

    ``mlflow.*.log_model`` creates a LoggedModel, uploads its files, then marks it READY; a failure
    half-way (artifact store full: ENOSPC) leaves a FAILED or PENDING model with partial files.
    """
    run = mlflow.active_run()
    started = int(time.time() * 1000) - 1
    try:
        yield
    except BaseException:
        if run is not None:
            client = MlflowClient()
            with quick_fail():
                try:
                    models = client.search_logged_models(
                        [run.info.experiment_id],
                        filter_string=f"source_run_id = {quote(run.info.run_id)}",
                    )
                except Exception as exc:  # noqa: BLE001 - the original failure is what matters
                    logger.warning("could not look for partial models of run %s: %s", run.info.run_id, exc)
                    models = []
                for model in models:
                    status = str(getattr(model.status, "name", model.status))
                    if status != "READY" and (model.creation_timestamp or 0) >= started:
                        logger.warning("removing the partial files of failed model %s", model.model_id)
                        _delete_logged_model_files(client, model)
        raise


def call_removing_failed_models(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` inside :func:`removing_failed_models` (one call at the call site)."""
    with removing_failed_models():
        return fn(*args, **kwargs)
