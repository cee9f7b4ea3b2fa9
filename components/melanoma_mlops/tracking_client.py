"""Where the MLflow client points and how it behaves when the tracking server does not answer.

Steps, the CLI and the local runner all talk to one store (:func:`tracking_uri`). An unreachable
server must not hang a run for minutes (issue 11), so the client gives up after a bounded retry
budget (:data:`RETRY_ENV`, :func:`apply_client_defaults`), bookkeeping after a failure does not
retry at all (:func:`quick_fail`), and :func:`unreachable_message` turns the failure into one line
naming the server and what to do (docs/runs.md, "Faults").
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from melanoma_mlops import envvars
from melanoma_mlops.errors import ConfigError, MelanomaError

LOCAL_STORE = Path("mlruns")

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


def default_tracking_uri(root: Path | None = None) -> str:
    """The embedded store: SQLite ``mlruns/mlflow.db`` under ``root`` (default: the working directory)."""
    base = (root or Path.cwd()).resolve() / LOCAL_STORE
    return f"sqlite:///{base / 'mlflow.db'}"


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the embedded SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


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
    with envvars.pinned({_RETRIES_VAR: "0", _TIMEOUT_VAR: "5"}):
        yield


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
