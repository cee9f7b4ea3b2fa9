"""Where the MLflow client points and how it behaves when the tracking server does not answer.

Steps, the CLI and the local runner all talk to one store (:func:`tracking_uri`). A tracking server
that is away for a while - a pod rescheduled, an upgrade, a restart slower than usual - must not
cost a training run, and one that is gone for good must not hang it (issue 11: 820 s of silence).
So MLflow's HTTP client rides out an **outage window** (:data:`OUTAGE_ENV`, default
:data:`DEFAULT_OUTAGE_WINDOW_S`): every request that finds the server down is retried with
exponential backoff (at most :data:`MAX_BACKOFF_S` between attempts) until the server answers or the
window, counted from the start of the outage in this process, has passed; the run says once what
it is waiting for (:class:`OutageRetry`). Past the window the request fails, and
:func:`unreachable_message` turns that into one line naming the server and what to do. Bookkeeping
after a failure does not retry at all (:func:`quick_fail`).

The window is a runtime setting of where the run executes (how long *this* MLflow deployment takes
to come back), not of the experiment: it changes no result, so it is not a pipeline parameter. It
travels like ``MLFLOW_TRACKING_URI``: ``run --mlflow-outage-window``, the environment of the steps,
the ``mlflow-client-config`` ConfigMap on a cluster; each step run logs it as the param
:data:`OUTAGE_PARAM` (docs/faults.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from melanoma_mlops import envvars
from melanoma_mlops.errors import ConfigError, MelanomaError

logger = logging.getLogger(__name__)

LOCAL_STORE = Path("mlruns")

#: Seconds an MLflow outage is ridden out before a request fails (0: fail at once).
OUTAGE_ENV = "MELANOMA_MLFLOW_OUTAGE_WINDOW"
DEFAULT_OUTAGE_WINDOW_S = 300
#: The MLflow param (on each step run and the parent) recording the window a run used.
OUTAGE_PARAM = "mlflow_outage_window_s"
#: The longest wait between two attempts while the server is away: it is found again soon after.
MAX_BACKOFF_S = 15.0
#: Seconds one MLflow HTTP request may wait for an answer (MLflow's own default is 120).
DEFAULT_REQUEST_TIMEOUT = 15
#: Seconds the CLI waits for a server that has not answered it yet (not running at all?).
FIRST_CONTACT_S = 30.0
#: MLFLOW_HTTP_REQUEST_MAX_RETRIES when a window is set: any count above 0 means "retry" to
#: :class:`OutageRetry`, which stops at the window; 10 is the most MLflow accepts.
WINDOW_RETRIES = 10
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


def outage_window_s(env: Mapping[str, str] | None = None) -> float:
    """The outage window in seconds (:data:`OUTAGE_ENV`, else :data:`DEFAULT_OUTAGE_WINDOW_S`)."""
    env = os.environ if env is None else env
    raw = env.get(OUTAGE_ENV, "").strip()
    if not raw:
        return float(DEFAULT_OUTAGE_WINDOW_S)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{OUTAGE_ENV}={raw!r} is not a number of seconds") from None
    if value < 0:
        raise ConfigError(f"{OUTAGE_ENV}={raw!r} must be 0 or more seconds")
    return value


def retry_settings(window_s: float) -> dict[str, str]:
    """MLflow's HTTP retry variables for an outage window of ``window_s`` seconds.

    With a window, the attempt count is no limit (:data:`WINDOW_RETRIES`): :class:`OutageRetry`
    stops at the window. Backoff factor 1: waits of 0, 2, 4, 8 s ..., at most :data:`MAX_BACKOFF_S`.
    ``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0`` (set by the user, or by :func:`quick_fail`) still means
    no retry at all.
    """
    retries = WINDOW_RETRIES if window_s > 0 else 0
    return {_RETRIES_VAR: str(retries), _BACKOFF_VAR: "1", _JITTER_VAR: "0.5"}


def apply_client_defaults(env: dict[str, str] | os._Environ[str] | None = None) -> None:
    """Ride out outages (unless MLflow's own variables are set): steps and the CLI call this.

    MLflow reads these variables on every request, so setting them here takes effect at once and
    is inherited by the step subprocesses of a local run. The first call in a process also makes
    MLflow's HTTP sessions retry with :class:`OutageRetry`.
    """
    env = os.environ if env is None else env
    for key, value in {
        **retry_settings(outage_window_s(env)),
        _TIMEOUT_VAR: str(DEFAULT_REQUEST_TIMEOUT),
    }.items():
        env.setdefault(key, value)
    if env is os.environ:
        install_outage_retry()


# ---------------------------------------------------------------------------------- outages
class Outage:
    """This process's view of the tracking server: since when it has not answered, whether the run
    has said so (once per outage), and whether it ever answered.

    ``first_contact_s``: the window while the server has not answered this process yet (the CLI
    sets it: a server that is simply not running is reported in seconds, not after the window);
    None in the steps, whose first request may fall in an outage that began between two steps.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.down_since: float | None = None
        self.announced = False
        self.ever_answered = False
        self.first_contact_s: float | None = None

    def window_s(self) -> float:
        """The window in force: the outage window, or the first-contact one before any answer."""
        window = outage_window_s()
        if self.first_contact_s is not None and not self.ever_answered:
            return min(window, self.first_contact_s)
        return window

    def failed(self, reason: str, waiting: bool = True) -> None:
        """A request found the server away. The first one of an outage that will wait for it, in the
        thread doing the run's work, says so (a background heartbeat waits silently; bookkeeping
        under :func:`quick_fail` does not wait at all)."""
        with self._lock:
            if self.down_since is None:
                self.down_since, self.announced = time.monotonic(), False
            window = self.window_s()
            main = threading.current_thread() is threading.main_thread()
            if waiting and main and not self.announced and window > 0:
                self.announced = True
                logger.warning(
                    "the MLflow tracking server at %s does not answer (%s): waiting for it, retrying with "
                    "backoff for up to %s (%s=%g)",
                    tracking_uri(),
                    reason,
                    _duration(window),
                    OUTAGE_ENV,
                    outage_window_s(),
                )

    def answered(self) -> None:
        with self._lock:
            if self.down_since is not None:
                back = time.monotonic() - self.down_since
                logger.debug("the MLflow tracking server answers again after %.0f s", back)
            self.down_since, self.announced, self.ever_answered = None, False, True

    def over(self) -> bool:
        """Has the outage lasted longer than the window in force?"""
        with self._lock:
            window = self.window_s()
            return window <= 0 or (
                self.down_since is not None and time.monotonic() - self.down_since > window
            )


OUTAGE = Outage()


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _reason(error: BaseException | None, response: Any) -> str:
    if response is not None and getattr(response, "status", None):
        return f"HTTP {response.status}"
    text = str(error or "no answer")
    for hint in ("Connection refused", "timed out", "Name or service not known", "Connection reset"):
        if hint.lower() in text.lower():
            return hint.lower()
    return type(error).__name__ if error is not None else "no answer"


def _outage_retry_class() -> type:
    from urllib3.util import Retry

    class OutageRetry(Retry):
        """urllib3's Retry bounded by the outage window instead of an attempt count.

        MLflow builds one per HTTP session (``mlflow.utils.request_utils.Retry``). A failure is
        recorded on :data:`OUTAGE` (the first one of an outage says so, once); a response that is not
        retried marks the server back. Retries end when the outage is older than the window, or at
        once when none were configured (``quick_fail``).
        """

        DEFAULT_BACKOFF_MAX = MAX_BACKOFF_S

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("backoff_max", MAX_BACKOFF_S)
            kwargs["backoff_max"] = min(float(kwargs["backoff_max"]), MAX_BACKOFF_S)
            super().__init__(*args, **kwargs)

        def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
            retry = super().is_retry(method, status_code, has_retry_after)
            if not retry:
                OUTAGE.answered()
            return retry

        def increment(self, method: Any = None, url: Any = None, response: Any = None, error: Any = None,
                      _pool: Any = None, _stacktrace: Any = None) -> Retry:  # fmt: skip
            if response is None or not response.get_redirect_location():
                OUTAGE.failed(_reason(error, response), waiting=self._configured() > 0)
            return super().increment(method, url, response, error, _pool, _stacktrace)

        def _configured(self) -> int:
            """The retry count MLflow configured: what is left plus what was used."""
            return (self.total or 0) + len(self.history) if self.total is not False else 0

        def is_exhausted(self) -> bool:
            if self._configured() <= 0:
                return super().is_exhausted()  # retries off (quick_fail): the first failure is final
            return OUTAGE.over()

    return OutageRetry


_installed: dict[str, type] = {}


def install_outage_retry() -> None:
    """Make MLflow's HTTP sessions (made from now on) retry with :class:`OutageRetry` (once).

    MLflow builds each session's retry policy from the class ``mlflow.utils.request_utils.Retry``;
    if a future MLflow no longer does, this logs a warning and its count-based retries stay.
    """
    if "class" in _installed:
        return
    try:
        from mlflow.utils import request_utils
    except ImportError:  # the serving image without MLflow's client: nothing to do
        return
    if not hasattr(request_utils, "Retry") or not hasattr(request_utils, "_cached_get_request_session"):
        logger.warning("mlflow.utils.request_utils has no Retry: MLflow outages are not ridden out")
        return
    _installed["class"] = request_utils.Retry = _outage_retry_class()
    request_utils._cached_get_request_session.cache_clear()


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
    return (
        f"cannot reach the MLflow tracking server at {uri} (waited {_duration(OUTAGE.window_s())}; "
        f"the outage window: {OUTAGE_ENV}={outage_window_s():g}). Start it (`melanoma-mlops mlflow-server`) "
        "or point MLFLOW_TRACKING_URI at a running one; then run again, or continue a run the outage "
        "stopped with `melanoma-mlops run --resume RUN` (`melanoma-mlops runs reap` closes what it left "
        "RUNNING)"
    )
