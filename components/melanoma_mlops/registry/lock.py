"""The promotion lock: a lease on the next move of ``@champion``, one registered-model name per try.

The MLflow registry has no transactions and no compare-and-set on tags or aliases, so two
promotions that read the current champion, then move the alias, can both believe they replaced the
same predecessor and overwrite each other's history. Every move therefore runs under
:func:`move_lock`: a lease on the next move number, taken by *creating* a registered model named
``<model>.promotion-lock.<move>.<attempt>``. Creating a registered model whose name exists fails
atomically in every MLflow backend (the name is the primary key of the SQL table behind a SQLite
file and behind a tracking server alike), so exactly one process wins each name. The loser waits
and retries; the winner reads the current champion, moves the alias, writes its record and deletes
the lock. A lock whose holder died is taken over after its expiry by creating the next attempt's
name (again exactly one winner; names are never reused, so there is no ABA). The only timing
assumption is that a live holder finishes within the lease (:data:`LOCK_TTL_S`, a move takes well
under a second). The holder writes what it is about to do on its lock first (:func:`write_intent`),
so a move interrupted after the alias moved is still recorded by whoever takes the lock over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.tracking import MlflowClient

from melanoma_mlops.artifacts import CHAMPION
from melanoma_mlops.errors import GateError
from melanoma_mlops.registry.lookup import alias_version, model_tags
from melanoma_mlops.registry.record import last_move, write_record
from melanoma_mlops.registry.stamp import who

logger = logging.getLogger(__name__)

#: A lock holder that has not finished after this long is presumed dead and may be superseded.
LOCK_TTL_S = 30.0
#: How long a move waits for another one to finish (longer than the TTL, so a dead holder's lock
#: is taken over rather than waited out in vain).
LOCK_WAIT_S = 90.0
LOCK_SUFFIX = ".promotion-lock."


@dataclass
class Lease:
    """The right to write move ``move`` of ``model_name``, held through the lock model ``name``."""

    model_name: str
    move: int
    attempt: int
    name: str
    owner: str
    #: Set once the holder wrote its intent on the lock: from then on a failure keeps the lock,
    #: so that whoever takes it over can record a move that already happened.
    intent_written: bool = False


def lock_name(model_name: str, move: int, attempt: int) -> str:
    return f"{model_name}{LOCK_SUFFIX}{move}.{attempt}"


def _error_code(exc: MlflowException) -> str:
    return str(getattr(exc, "error_code", ""))


def _is_name_conflict(exc: MlflowException) -> bool:
    # Creating an existing name: RESOURCE_ALREADY_EXISTS; the SQL store then re-reads the model
    # to word its error, which can find it already deleted by its holder: RESOURCE_DOES_NOT_EXIST.
    return _error_code(exc) in (
        ErrorCode.Name(RESOURCE_ALREADY_EXISTS),
        ErrorCode.Name(RESOURCE_DOES_NOT_EXIST),
    )


def _lock_tags(client: MlflowClient, name: str) -> dict[str, str] | None:
    try:
        return dict(client.get_registered_model(name).tags)
    except MlflowException as exc:
        if _error_code(exc) == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            return None
        raise


def _delete_lock(client: MlflowClient, name: str) -> None:
    try:
        client.delete_registered_model(name)
    except MlflowException as exc:  # gone already, or another user's lock we may not delete
        logger.debug("lock %s not deleted: %s", name, exc)


def _try_create_lock(client: MlflowClient, name: str, owner: str, ttl_s: float) -> bool:
    tags = {
        "owner": owner,
        "host": socket.gethostname(),
        "pid": str(os.getpid()),
        "by": who(),
        "acquired_at": f"{time.time():.3f}",
        "expires_at": f"{time.time() + ttl_s:.3f}",
    }
    try:
        client.create_registered_model(
            name,
            tags=tags,
            description="Transient lock of `melanoma-mlops promote` (see registry/lock.py). "
            "Deleted when the move it guards is recorded; safe to delete when expired.",
        )
    except MlflowException as exc:
        if _is_name_conflict(exc):
            return False
        raise
    return True


def _expired(tags: dict[str, str]) -> bool:
    try:
        return float(tags.get("expires_at", "0")) < time.time()
    except ValueError:
        return True


def acquire(
    client: MlflowClient, model_name: str, *, wait_s: float | None = None, ttl_s: float | None = None
) -> Lease:
    """Take the lease on the next move of ``model_name``: wait while another move holds it.

    The next move number is one past the last recorded move. Attempt 1 of a move is tried first;
    a later attempt only when every earlier one is held by an expired lease (a dead holder).
    After winning, the record is re-read: if the move was recorded in the meantime (the slot was
    read before its holder finished), the lease is dropped and the next move is tried.
    """
    wait_s = LOCK_WAIT_S if wait_s is None else wait_s
    ttl_s = LOCK_TTL_S if ttl_s is None else ttl_s
    owner = f"{uuid.uuid4().hex}@{socket.gethostname()}:{os.getpid()}"
    deadline = time.monotonic() + wait_s
    delay = 0.05
    while True:
        move = last_move(model_tags(client, model_name)) + 1
        lease, holder = _claim_move(client, model_name, move, owner, ttl_s)
        if lease is not None:
            return lease
        if time.monotonic() > deadline:
            raise _still_held(model_name, holder, wait_s, ttl_s)
        time.sleep(delay * (1 + random.random()))  # jitter: two waiters do not retry in lockstep
        delay = min(delay * 1.5, 0.5)


def _claim_move(
    client: MlflowClient, model_name: str, move: int, owner: str, ttl_s: float
) -> tuple[Lease | None, dict[str, str] | None]:
    """Try the attempts of ``move`` in turn, past expired ones: (the lease, None) when won, else
    (None, the tags of the lock last seen held, or None when it was already gone)."""
    attempt = 1
    while True:
        name = lock_name(model_name, move, attempt)
        won = _try_create_lock(client, name, owner, ttl_s)
        holder = None if won else _lock_tags(client, name)
        if won or (holder is not None and holder.get("owner") == owner):
            # Ours (also when the create went through but its answer was lost and retried).
            lease = Lease(model_name, move, attempt, name, owner)
            if attempt > 1:
                _recover(client, lease)
            if last_move(model_tags(client, model_name)) >= move:
                # Our read of the record was stale, or the dead holder's move is recorded now.
                _delete_lock(client, name)
                return None, holder
            return lease, holder
        if holder is None:
            return None, None  # released between our create and our read: re-read the record, retry
        if not _expired(holder):
            return None, holder  # a live holder: wait for it
        logger.warning(
            "%s: the promotion lock %s of %s (pid %s on %s) has expired; taking over",
            model_name,
            name,
            holder.get("by", "?"),
            holder.get("pid", "?"),
            holder.get("host", "?"),
        )
        attempt += 1


def _still_held(model_name: str, holder: dict[str, str] | None, wait_s: float, ttl_s: float) -> GateError:
    """The error of a move that waited ``wait_s`` for the lock in vain, naming its holder if known."""
    who_holds = (
        f"{holder.get('by', '?')} (pid {holder.get('pid', '?')} on {holder.get('host', '?')})"
        if holder
        else "another process"
    )
    return GateError(
        f"another move of {model_name}@{CHAMPION} by {who_holds} did not finish within {wait_s:g} s; "
        f"retry later (a lock left by a dead process expires {ttl_s:g} s after it was taken)"
    )


def _recover(client: MlflowClient, lease: Lease) -> None:
    """Record the move of a dead holder of an earlier attempt if it moved the alias before dying."""
    for attempt in range(1, lease.attempt):
        name = lock_name(lease.model_name, lease.move, attempt)
        tags = _lock_tags(client, name) or {}
        intent = tags.get("intent")
        if intent:
            entry = json.loads(intent)
            current = alias_version(client, lease.model_name, CHAMPION)
            if current is not None and str(current.version) == str(entry.get("to")):
                entry["recovered"] = f"written by {who()} after its holder died"
                write_record(client, lease.model_name, lease.move, entry)
                logger.warning(
                    "%s: recorded move %d (%s -> %s) of a process that died before recording it",
                    lease.model_name,
                    lease.move,
                    entry.get("from") or "none",
                    entry.get("to"),
                )
        _delete_lock(client, name)


def write_intent(client: MlflowClient, lease: Lease, entry: dict[str, Any]) -> None:
    """Write the move about to happen on the lock itself, before the alias moves.

    If the holder dies after moving the alias, whoever takes the lock over finds what it did and
    records it (see :func:`_recover`); from now on a failure keeps the lock for that.
    """
    client.set_registered_model_tag(lease.name, "intent", json.dumps(entry, separators=(",", ":")))
    lease.intent_written = True


def release(client: MlflowClient, lease: Lease) -> None:
    _delete_lock(client, lease.name)


@contextlib.contextmanager
def move_lock(
    client: MlflowClient, model_name: str, *, wait_s: float | None = None, ttl_s: float | None = None
) -> Iterator[Lease]:
    """Hold the lease on the next move of ``model_name`` for the duration of the block."""
    lease = acquire(client, model_name, wait_s=wait_s, ttl_s=ttl_s)
    try:
        yield lease
    except BaseException:
        if lease.intent_written:  # the alias may have moved: leave the intent to the next holder
            logger.warning(
                "%s: move %d failed midway; its lock %s stays for recovery",
                model_name,
                lease.move,
                lease.name,
            )
            raise
        release(client, lease)
        raise
    release(client, lease)
