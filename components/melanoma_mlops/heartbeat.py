"""Heartbeats of open runs, and the reaper that closes runs whose heartbeat stopped.

Every open run carries a heartbeat (host, pid, the process's identity, last beat:
:class:`Heartbeat`), so a run whose process died (OOM kill, lost node, ``kill -9``) is found and
marked KILLED with a reason by :func:`reap_stale_runs` instead of staying RUNNING forever
(docs/runs.md, "Reap"). Whether the process is still running is asked of
:mod:`melanoma_mlops.liveness`: a zombie, a dying process or a reused pid is not a live run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mlflow.entities import RunStatus, RunTag
from mlflow.tracking import MlflowClient

from melanoma_mlops import EXPERIMENT_NAME, liveness
from melanoma_mlops.artifacts import EXPERIMENT_ENV, PARENT_TAG
from melanoma_mlops.errors import ConfigError

logger = logging.getLogger(__name__)

HEARTBEAT_HOST_TAG = "heartbeat.host"
HEARTBEAT_PID_TAG = "heartbeat.pid"
HEARTBEAT_AT_TAG = "heartbeat.at"
#: The beating process's identity (boot id, pid namespace, start time): a reused pid is not it.
HEARTBEAT_PROCESS_TAG = "heartbeat.process"
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
        self._identity = liveness.identity()

    def beat(self) -> None:
        tags = [
            RunTag(HEARTBEAT_HOST_TAG, socket.gethostname()),
            RunTag(HEARTBEAT_PID_TAG, str(os.getpid())),
            RunTag(HEARTBEAT_PROCESS_TAG, self._identity),
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


def beating_process(run: Any) -> tuple[int, str] | None:
    """(pid, identity) of the process of this machine that last beat ``run``; None if another
    machine's (or no pid recorded)."""
    tags = run.data.tags
    pid = tags.get(HEARTBEAT_PID_TAG, "")
    if tags.get(HEARTBEAT_HOST_TAG, "") != socket.gethostname() or not pid.isdigit():
        return None
    return int(pid), tags.get(HEARTBEAT_PROCESS_TAG, "")


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
    local = beating_process(run)
    if local is not None and liveness.is_alive(*local) is False:
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
