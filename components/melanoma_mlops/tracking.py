"""MLflow bookkeeping shared by every step: one parent run per pipeline run, one nested run per step.

Steps run in separate processes (and on a cluster in separate pods), so the parent run is
created by the first step and its id travels through the DAG as a plain string (a local run
creates it in the CLI and hands it to the first step in :data:`PARENT_RUN_ENV`). Each step opens
its own child run tagged ``mlflow.parentRunId``; a failing step marks both itself and the parent
FAILED so the MLflow UI never shows a half-finished run as healthy.

Faults (README "Faults and recovery"):

- the client gives up on an unreachable tracking server after a bounded retry budget
  (:data:`RETRY_ENV`, :func:`apply_client_defaults`), and :func:`unreachable_message` turns the
  failure into one line naming the server and what to do;
- every open run carries a heartbeat (host, pid, last beat: :class:`Heartbeat`), so a run whose
  process died (OOM kill, lost node, ``kill -9``) is found and marked KILLED with a reason by
  :func:`reap_stale_runs` instead of staying RUNNING forever;
- a registration that fails half-way leaves no partial model files (:func:`removing_failed_models`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from melanoma_mlops import EXPERIMENT_NAME
from melanoma_mlops.artifacts import EXPERIMENT_ENV, IMAGE_ENV, IMAGE_ID_ENV, PARENT_TAG
from melanoma_mlops.errors import ConfigError, MelanomaError

logger = logging.getLogger(__name__)

LOCAL_STORE = Path("mlruns")
#: Set by the local runner: the parent run the first step adopts instead of creating one (a local
#: run creates its parent in the CLI; ``run --resume`` hands over the run it continues).
PARENT_RUN_ENV = "MELANOMA_PARENT_RUN_ID"
#: MLflow 3's UI reads this experiment tag to tell model training from GenAI work.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
#: MLflow's run description (the "Description" box of the run page).
NOTE_TAG = "mlflow.note.content"

# ------------------------------------------------------------------------------ retry budget
#: Seconds the MLflow client keeps retrying an unreachable tracking server before it gives up.
RETRY_ENV = "MELANOMA_MLFLOW_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 30
#: Seconds one MLflow HTTP request may wait for an answer (MLflow's own default is 120).
DEFAULT_REQUEST_TIMEOUT = 15
_RETRIES_VAR = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
_BACKOFF_VAR = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"
_JITTER_VAR = "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER"
_TIMEOUT_VAR = "MLFLOW_HTTP_REQUEST_TIMEOUT"


class TrackingUnavailableError(MelanomaError):
    """The MLflow tracking server (or store) cannot be reached."""


def retry_settings(budget_s: float) -> dict[str, str]:
    """MLflow's HTTP retry variables for a retry budget of ``budget_s`` seconds.

    MLflow retries a failed request ``n`` times, sleeping 0, 2f, 4f ... seconds (backoff factor
    f = 1 here) plus up to 0.5 s of jitter each time; its own defaults (7 retries, factor 2, 120 s
    timeout) add up to about four minutes per request and, with several requests failing in a row,
    the 820 s hang of issue 11. ``n`` is the largest count whose sleeps fit in the budget.
    """
    retries = 0
    while 2 ** (retries + 1) - 2 + 0.5 * (retries + 1) <= budget_s:
        retries += 1
    return {_RETRIES_VAR: str(retries), _BACKOFF_VAR: "1", _JITTER_VAR: "0.5"}


def retry_budget_s(env: Mapping[str, str] | None = None) -> float:
    env = os.environ if env is None else env
    raw = env.get(RETRY_ENV, "").strip()
    if not raw:
        return float(DEFAULT_RETRY_SECONDS)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{RETRY_ENV}={raw!r} is not a number of seconds") from None
    if value < 0:
        raise ConfigError(f"{RETRY_ENV}={raw!r} must be 0 or more seconds")
    return value


def apply_client_defaults(env: dict[str, str] | os._Environ[str] | None = None) -> None:
    """Bound MLflow's retries (unless MLflow's own variables are set): steps and the CLI call this.

    MLflow reads these variables on every request, so setting them here takes effect at once and
    is inherited by the step subprocesses of a local run.
    """
    env = os.environ if env is None else env
    for key, value in {
        **retry_settings(retry_budget_s(env)),
        _TIMEOUT_VAR: str(DEFAULT_REQUEST_TIMEOUT),
    }.items():
        env.setdefault(key, value)


@contextlib.contextmanager
def quick_fail() -> Iterator[None]:
    """No retries and a short timeout for best-effort bookkeeping after a failure.

    When a step has already failed because the server is down, marking its runs FAILED must not
    spend a second (and third) retry budget: the heartbeat reaper closes them later instead.
    """
    saved = {k: os.environ.get(k) for k in (_RETRIES_VAR, _TIMEOUT_VAR)}
    os.environ.update({_RETRIES_VAR: "0", _TIMEOUT_VAR: "5"})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_UNREACHABLE_HINTS = (
    "Max retries exceeded",
    "Failed to establish a new connection",
    "Connection refused",
    "Connection aborted",
    "Read timed out",
    "ConnectTimeout",
    "Name or service not known",
    "Temporary failure in name resolution",
    "too many 5",  # urllib3: "too many 500 error responses"
)


def unreachable_message(exc: BaseException, uri: str | None = None) -> str | None:
    """One line naming the tracking server and what to do, when ``exc`` means it is unreachable."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    text = " ".join(f"{type(e).__name__}: {e}" for e in chain)
    network = any(type(e).__module__.startswith(("requests", "urllib3")) for e in chain)
    if not network and not any(hint in text for hint in _UNREACHABLE_HINTS):
        return None
    uri = uri or tracking_uri()
    settings = retry_settings(retry_budget_s())
    return (
        f"cannot reach the MLflow tracking server at {uri} (gave up after "
        f"{os.environ.get(_RETRIES_VAR, settings[_RETRIES_VAR])} retries, the "
        f"{RETRY_ENV}={retry_budget_s():g} s budget). Start it (`melanoma-mlops mlflow-server`) or point "
        "MLFLOW_TRACKING_URI at a running one; then run again, or continue a run the outage stopped with "
        "`melanoma-mlops run --resume RUN` (`melanoma-mlops runs reap` closes what it left RUNNING)"
    )


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
    apply_client_defaults()
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        if exp.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id
    artifact_location = None
    if uri.startswith("sqlite:///"):
        store_dir = Path(uri.removeprefix("sqlite:///")).parent
        store_dir.mkdir(parents=True, exist_ok=True)
        artifact_location = (store_dir / "artifacts").resolve().as_uri()
    try:
        # Tagged as model development: MLflow 3's UI otherwise treats it as a GenAI experiment.
        return client.create_experiment(
            experiment, artifact_location=artifact_location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
        )
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
            _best_effort(f"delete the tag {key}", client.delete_tag, run_id, key)


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


def _best_effort(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
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
        if params:
            log_params(params, parent_run_id)
        yield run.info.run_id
    except BaseException as exc:
        beat.stop()
        killed = isinstance(exc, KeyboardInterrupt | TerminatedError)
        status = RunStatus.to_string(RunStatus.KILLED if killed else RunStatus.FAILED)
        with quick_fail():
            _best_effort(f"mark the {step} run {status}", mlflow.end_run, status)
            _best_effort(f"mark the parent run {status}", client.set_terminated, parent_run_id, status)
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


# ---------------------------------------------------------------------------------- heartbeat
HEARTBEAT_HOST_TAG = "heartbeat.host"
HEARTBEAT_PID_TAG = "heartbeat.pid"
HEARTBEAT_AT_TAG = "heartbeat.at"
REAPED_TAG = "reaped.reason"
HEARTBEAT_ENV = "MELANOMA_HEARTBEAT_SECONDS"
DEFAULT_HEARTBEAT_S = 30.0
#: A RUNNING run whose last beat is older than this is stale (a pending pod on a cluster does
#: not beat: give ``runs reap --stale-after`` more time there).
DEFAULT_STALE_AFTER_S = 600.0
#: What ``melanoma-mlops run`` reaps before it starts: runs of this host whose process is gone at
#: once, any other run only after this long without a beat (it may be a cluster run whose next pod
#: waits for a node: ``runs reap`` is the command for shorter limits).
AUTO_REAP_STALE_AFTER_S = 3600.0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_iso(text: str) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def heartbeat_interval_s() -> float:
    raw = os.environ.get(HEARTBEAT_ENV, "").strip()
    try:
        return max(1.0, float(raw)) if raw else DEFAULT_HEARTBEAT_S
    except ValueError:
        raise ConfigError(f"{HEARTBEAT_ENV}={raw!r} is not a number of seconds") from None


class Heartbeat:
    """Beat ``run_ids`` (host, pid, time as tags) every few seconds from a daemon thread.

    A beat that fails (server briefly down) is logged at debug level and retried at the next
    interval; the thread never blocks the step, and :meth:`stop` does not wait for a hung request.
    """

    def __init__(self, run_ids: list[str], interval_s: float | None = None) -> None:
        self.run_ids = [r for r in dict.fromkeys(run_ids) if r]
        self.interval_s = interval_s or heartbeat_interval_s()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mlflow-heartbeat", daemon=True)

    def beat(self) -> None:
        tags = [
            RunTag(HEARTBEAT_HOST_TAG, socket.gethostname()),
            RunTag(HEARTBEAT_PID_TAG, str(os.getpid())),
            RunTag(HEARTBEAT_AT_TAG, _iso(_now())),
        ]
        client = MlflowClient()
        for run_id in self.run_ids:
            client.log_batch(run_id, tags=tags)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried at the next interval
                logger.debug("heartbeat of %s failed: %s", self.run_ids, exc)
            self._stop.wait(self.interval_s)

    def start(self) -> Heartbeat:
        if self.run_ids:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1.0)


@contextlib.contextmanager
def heartbeat(run_ids: list[str]) -> Iterator[Heartbeat]:
    beat = Heartbeat(run_ids).start()
    try:
        yield beat
    finally:
        beat.stop()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def staleness(run: Any, stale_after_s: float, now: dt.datetime | None = None) -> str | None:
    """Why a RUNNING run is stale (its process is gone or silent), or None while it is alive."""
    now = now or _now()
    tags = run.data.tags
    host, pid, at = (tags.get(k, "") for k in (HEARTBEAT_HOST_TAG, HEARTBEAT_PID_TAG, HEARTBEAT_AT_TAG))
    last = _parse_iso(at) if at else None
    if last is None:
        started = dt.datetime.fromtimestamp(run.info.start_time / 1000, dt.UTC)
        if (now - started).total_seconds() > stale_after_s:
            return f"no heartbeat recorded and started {_iso(started)}"
        return None
    if host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid)):
        return f"its process {pid} on {host} is gone (last heartbeat {_iso(last)})"
    silent = (now - last).total_seconds()
    if silent > stale_after_s:
        return (
            f"no heartbeat from {host or '?'} pid {pid or '?'} for {silent / 60:.0f} min (last {_iso(last)})"
        )
    return None


@dataclass
class Reaped:
    run_id: str
    run_name: str
    experiment: str
    reason: str


def kill_run(client: MlflowClient, run_id: str, reason: str) -> None:
    """Mark a run KILLED with the reason as a tag (who reaped it, when, why)."""
    client.log_batch(
        run_id,
        tags=[
            RunTag(REAPED_TAG, reason[:4900]),
            RunTag("reaped.by", f"{socket.gethostname()}:{os.getpid()}"),
            RunTag("reaped.at", _iso(_now())),
        ],
    )
    client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.KILLED))


def our_experiments(client: MlflowClient, names: list[str] | None = None) -> dict[str, str]:
    """Experiment id -> name of the pipeline's experiments that exist in this store."""
    wanted = names or [EXPERIMENT_NAME, "melanoma-ablation", os.environ.get(EXPERIMENT_ENV, "")]
    found = {}
    for name in dict.fromkeys(n for n in wanted if n):
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            found[exp.experiment_id] = name
    return found


def reap_stale_runs(
    stale_after_s: float = DEFAULT_STALE_AFTER_S,
    *,
    experiments: list[str] | None = None,
    dry_run: bool = False,
    exclude: set[str] | None = None,
) -> list[Reaped]:
    """Mark RUNNING runs whose process is gone or silent KILLED, with the reason; return them.

    A parent found stale takes its RUNNING children with it (they cannot finish without it).
    """
    client = MlflowClient()
    exps = our_experiments(client, experiments)
    if not exps:
        return []
    running = client.search_runs(list(exps), filter_string="attributes.status = 'RUNNING'", max_results=5000)
    now = _now()
    reaped: list[Reaped] = []
    stale_ids: set[str] = set()
    for run in running:
        if run.info.run_id in (exclude or set()):
            continue
        reason = staleness(run, stale_after_s, now)
        if reason is not None:
            stale_ids.add(run.info.run_id)
            reaped.append(Reaped(run.info.run_id, run.info.run_name, exps[run.info.experiment_id], reason))
    for run in running:
        parent = run.data.tags.get(PARENT_TAG, "")
        if run.info.run_id not in stale_ids and parent in stale_ids:
            stale_ids.add(run.info.run_id)
            reaped.append(
                Reaped(
                    run.info.run_id,
                    run.info.run_name,
                    exps[run.info.experiment_id],
                    f"its parent run {parent} is stale",
                )
            )
    if not dry_run:
        for item in reaped:
            kill_run(client, item.run_id, item.reason)
    return reaped


# ---------------------------------------------------------------------------------- artifacts
def delete_artifacts(run_id: str, path: str) -> None:
    """Delete ``path`` below a run's artifacts (a local folder, S3, or the server's proxy)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    run = MlflowClient().get_run(run_id)
    get_artifact_repository(run.info.artifact_uri).delete_artifacts(path)


def _delete_logged_model_files(client: MlflowClient, model: Any) -> None:
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    try:
        get_artifact_repository(model.artifact_location).delete_artifacts()
    except Exception as exc:  # noqa: BLE001 - report what could not be removed; the failure wins
        logger.warning("could not delete the partial files of model %s: %s", model.model_id, exc)
    _best_effort(f"delete the logged model {model.model_id}", client.delete_logged_model, model.model_id)


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
            tags=[InputTag("mlflow.data.context", context), InputTag("data.fingerprint", fingerprint)],
        )
    client = MlflowClient()
    for run_id in dict.fromkeys(run_ids):
        client.log_inputs(run_id, datasets=[entity])


def call_removing_failed_models(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` inside :func:`removing_failed_models` (one call at the call site)."""
    with removing_failed_models():
        return fn(*args, **kwargs)


def log_parent_text(parent_run_id: str, text: str, artifact_file: str) -> None:
    """A text artifact (a report, the model card) on the parent run too."""
    MlflowClient().log_text(parent_run_id, text, artifact_file)
