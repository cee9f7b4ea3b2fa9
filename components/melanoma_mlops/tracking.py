"""MLflow bookkeeping shared by every step: one parent run per pipeline run, one nested run per step.

Steps run in separate processes (and on a cluster in separate pods), so the parent run is
created by the first step and its id travels through the DAG as a plain string (a local run
creates it in the CLI and hands it to the first step in :data:`PARENT_RUN_ENV`). Each step opens
its own child run tagged ``mlflow.parentRunId``; a failing step marks both itself and the parent
FAILED so the MLflow UI never shows a half-finished run as healthy.

Faults (docs/runs.md, "Faults"): while a step runs, both runs carry a heartbeat
(:mod:`melanoma_mlops.heartbeat`, whose reaper closes runs left RUNNING by a dead process);
bookkeeping after a failure neither retries (:func:`~melanoma_mlops.tracking_client.quick_fail`)
nor hides the failure (:func:`best_effort`). The client's retry budget and store URI live in
:mod:`melanoma_mlops.tracking_client`; artifact deletion in :mod:`melanoma_mlops.artifact_cleanup`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from melanoma_mlops import EXPERIMENT_NAME, ui_links
from melanoma_mlops.artifacts import EXPERIMENT_ENV, FINGERPRINT_TAG, IMAGE_ENV, IMAGE_ID_ENV, PARENT_TAG
from melanoma_mlops.errors import ConfigError
from melanoma_mlops.heartbeat import Heartbeat
from melanoma_mlops.tracking_client import (
    OUTAGE_PARAM,
    apply_client_defaults,
    outage_window_s,
    quick_fail,
    tracking_uri,
)

logger = logging.getLogger(__name__)

#: Set by the local runner: the parent run the first step adopts instead of creating one (a local
#: run creates its parent in the CLI; ``run --resume`` hands over the run it continues).
PARENT_RUN_ENV = "MELANOMA_PARENT_RUN_ID"
#: MLflow 3's experiment kind: model training, not GenAI work. MLflow 3.17's UI still opens the view
#: its browser switch remembers (see :mod:`melanoma_mlops.ui_links`), newer ones follow the tag.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def experiment_tags() -> dict[str, str]:
    """The tags every experiment of ours carries: its kind, and the runs table's headline view."""
    return {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND, **ui_links.headline_view_tags()}


#: MLflow's run description (the "Description" box of the run page).
NOTE_TAG = "mlflow.note.content"


def configure(experiment: str | None = None) -> str:
    """Point MLflow at the tracking store, create the experiment if needed; return its id.

    The experiment defaults to ``melanoma-two-stage``; the ablation pipeline sets
    ``MELANOMA_EXPERIMENT`` on its tasks so the steps it shares with the main DAG file their runs
    under ``melanoma-ablation``.

    With the embedded SQLite store, artifacts go to ``mlruns/artifacts`` beside the database
    rather than MLflow's default ``./mlartifacts`` so the whole store is one folder.
    """
    experiment = experiment or os.environ.get(EXPERIMENT_ENV) or EXPERIMENT_NAME
    apply_client_defaults()
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        for key, value in experiment_tags().items():
            if exp.tags.get(key) != value:
                client.set_experiment_tag(exp.experiment_id, key, value)
        return exp.experiment_id
    artifact_location = None
    if uri.startswith("sqlite:///"):
        store_dir = Path(uri.removeprefix("sqlite:///")).parent
        store_dir.mkdir(parents=True, exist_ok=True)
        artifact_location = (store_dir / "artifacts").resolve().as_uri()
    try:
        tags = experiment_tags()
        return client.create_experiment(experiment, artifact_location=artifact_location, tags=tags)
    except mlflow.exceptions.MlflowException:
        # Another step created it between our lookup and create.
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            raise
        return exp.experiment_id


def start_pipeline_run(run_name: str, tags: Mapping[str, str] | None = None) -> str:
    """The parent run of one pipeline run (left RUNNING until :func:`finish_pipeline_run`).

    With :data:`PARENT_RUN_ENV` set (a local run, or ``run --resume``) that run is adopted: it gets
    the tags and is set RUNNING again; otherwise a new run is created (a cluster run).
    """
    experiment_id = configure()
    client = MlflowClient()
    tags = {"pipeline": "two-stage", **(tags or {})}
    adopted = os.environ.get(PARENT_RUN_ENV, "").strip()
    if adopted:
        run = client.get_run(adopted)
        client.log_batch(adopted, tags=[RunTag(k, str(v)) for k, v in tags.items() if v is not None])
        if run.info.status != "RUNNING":
            client.update_run(adopted, status="RUNNING")
        logger.debug("adopted the MLflow parent run %s (%s)", adopted, run.info.run_name)
        return adopted
    run = client.create_run(experiment_id, run_name=run_name or None, tags=tags)
    logger.debug("created the MLflow parent run %s (%s)", run.info.run_id, run.info.run_name)
    return run.info.run_id


def finish_pipeline_run(parent_run_id: str, status: str = "FINISHED") -> None:
    MlflowClient().set_terminated(parent_run_id, status=status)
    if status == "FINISHED":
        tidy_finished(parent_run_id)


#: Tags that only matter while a run can still be continued (heartbeat, finished-step records,
#: checkpoints): removed from a FINISHED run, so its tags are what a person reads.
TRANSIENT_TAG_PREFIXES = ("heartbeat.", "step.", "checkpoint.", "local.pipeline_root", "reaped.")


def tidy_finished(run_id: str) -> None:
    """Drop the transient tags of a FINISHED run (kept on a failed or killed one, for --resume)."""
    client = MlflowClient()
    run = client.get_run(run_id)
    if run.info.status != "FINISHED":
        return
    for key in run.data.tags:
        if key.startswith(TRANSIENT_TAG_PREFIXES):
            best_effort(f"delete the tag {key}", client.delete_tag, run_id, key)


def ancestors(client: MlflowClient, run_id: str, depth: int = 3) -> list[str]:
    """``run_id`` and the runs above it (an ablation step: its trial run, then the ablation run)."""
    chain = [run_id]
    with contextlib.suppress(Exception):
        while len(chain) < depth:
            above = client.get_run(chain[-1]).data.tags.get(PARENT_TAG, "")
            if not above or above in chain:
                break
            chain.append(above)
    return chain


class TerminatedError(BaseException):
    """SIGTERM (a Kubernetes pod being stopped, ``kill``): unwinds like Ctrl-C so runs are closed."""


def best_effort(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Call ``fn``, only logging a failure: bookkeeping after a failure must not replace it."""
    try:
        fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - bookkeeping after a failure must not hide the failure
        logger.warning("could not %s (%s): the heartbeat reaper will close it", what, exc)


@contextlib.contextmanager
def step_run(parent_run_id: str, step: str, params: Mapping[str, Any] | None = None) -> Iterator[str]:
    """Open the nested run of one step as the active run; yield its id.

    Params are logged on the step run and on the parent, so the parent alone compares cleanly
    across pipeline runs. While the step runs, both runs carry a heartbeat. An exception fails the
    step run and the parent run (KILLED for Ctrl-C / SIGTERM), then propagates.
    """
    experiment_id = configure()
    client = MlflowClient()
    run = mlflow.start_run(
        experiment_id=experiment_id,
        run_name=step,
        parent_run_id=parent_run_id,
        tags={"step": step, **runtime_tags()},
    )
    beat = Heartbeat([run.info.run_id, *ancestors(client, parent_run_id)]).start()
    try:
        # The outage window this step ran with (a runtime setting: not part of ``params``' groups).
        log_params({**(params or {}), OUTAGE_PARAM: f"{outage_window_s():g}"}, parent_run_id)
        yield run.info.run_id
    except BaseException as exc:
        beat.stop()
        killed = isinstance(exc, KeyboardInterrupt | TerminatedError)
        status = RunStatus.to_string(RunStatus.KILLED if killed else RunStatus.FAILED)
        with quick_fail():
            best_effort(f"mark the {step} run {status}", mlflow.end_run, status)
            best_effort(f"mark the parent run {status}", client.set_terminated, parent_run_id, status)
        raise
    beat.stop()
    mlflow.end_run()


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


def data_fingerprint(parent_run_id: str) -> str:
    """The validated data set's fingerprint (the parent run's tag; '' when absent)."""
    return MlflowClient().get_run(parent_run_id).data.tags.get(FINGERPRINT_TAG, "")


def parent_param(parent_run_id: str, key: str, default: str = "") -> str:
    """One param of the parent run (``task``, as validate logged it), ``default`` when absent."""
    return MlflowClient().get_run(parent_run_id).data.params.get(key, default)


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


def set_note(run_id: str, markdown: str) -> None:
    """The run's description (MLflow's note), shown at the top of its page."""
    MlflowClient().set_tag(run_id, NOTE_TAG, markdown)


def log_parent_artifact(parent_run_id: str, local_path: str | Path, artifact_path: str | None = None) -> None:
    """A file (or folder) on the parent run too, so the parent alone holds what users compare."""
    client = MlflowClient()
    if Path(local_path).is_dir():
        client.log_artifacts(parent_run_id, str(local_path), artifact_path)
    else:
        client.log_artifact(parent_run_id, str(local_path), artifact_path)


def log_parent_params(parent_run_id: str, values: Mapping[str, Any]) -> None:
    """Bookkeeping figures (counts) as parent params, so the parent's metrics are the results."""
    log_params_once(MlflowClient(), parent_run_id, values)


def dumps_tag(value: Any) -> str:
    """Compact JSON for a tag value (NumPy scalars as plain numbers)."""
    return json.dumps(
        value,
        separators=(",", ":"),
        sort_keys=True,
        default=lambda o: o.item() if hasattr(o, "item") else str(o),
    )


def log_dataset(
    run_ids: list[str], df: Any, *, name: str, fingerprint: str, source: str, context: str = "training"
) -> None:
    """The data as an MLflow dataset input of each run (the UI's Dataset column and filter).

    The digest is the data fingerprint (its first 36 hex digits: MLflow stores at most 36).
    """
    import warnings

    import mlflow.data
    from mlflow.entities import DatasetInput, InputTag

    with warnings.catch_warnings():
        # "source can be interpreted in multiple ways", "integer columns cannot hold missing values"
        warnings.simplefilter("ignore", UserWarning)
        try:
            dataset = mlflow.data.from_pandas(df, source=source, name=name, digest=fingerprint[:36])
        except Exception:  # noqa: BLE001 - an unresolvable source (e.g. s3:// without a plugin) is optional
            dataset = mlflow.data.from_pandas(df, name=name, digest=fingerprint[:36])
        entity = DatasetInput(
            dataset._to_mlflow_entity(),
            tags=[InputTag("mlflow.data.context", context), InputTag(FINGERPRINT_TAG, fingerprint)],
        )
    client = MlflowClient()
    for run_id in dict.fromkeys(run_ids):
        client.log_inputs(run_id, datasets=[entity])


def log_parent_text(parent_run_id: str, text: str, artifact_file: str) -> None:
    """A text artifact (a report, the model card) on the parent run too."""
    MlflowClient().log_text(parent_run_id, text, artifact_file)


def link_model_to_parent(parent_run_id: str, model_name: str, version: str) -> None:
    """List a registered version's logged model as an output of the pipeline's parent run.

    The ``register`` step logs the model, so MLflow ties it to that nested run; the parent run, the
    page users compare, would show "Registered models: None". MLflow 3 shows a run's *model outputs*
    (logged models, with the versions registered from them) on its page, so the parent gets one.
    """
    from mlflow.entities import LoggedModelOutput

    client = MlflowClient()
    mv = client.get_model_version(model_name, version)
    model_id = getattr(mv, "model_id", None) or (
        mv.source.removeprefix("models:/") if str(mv.source).startswith("models:/m-") else None
    )
    if not model_id:
        logger.warning(
            "%s v%s has no logged model (source %s): not linked to the parent run",
            model_name,
            version,
            mv.source,
        )
        return
    client.log_outputs(parent_run_id, [LoggedModelOutput(model_id=model_id, step=0)])
