"""Moving the ``champion`` alias: promote, roll back, and the append-only record of every move.

**The record.** Every move of ``@champion`` is one registered-model tag
``champion_log.<NNNNNN>`` whose value is a compact JSON object (move number, when, who, action,
from which version to which, why, the gate figures of the new champion). A move writes a new key
and never rewrites an old one, so the record only grows; ``melanoma-mlops history`` prints it.
Rollback targets are computed by replaying it (:func:`rollback_stack`). For the registry UI and
older readers the move is also written, as before, on both versions as loose tags
``audit.<k>.action|by|at|reason|previous_champion|...`` (the version losing ``@champion`` gets an
entry too: ``replaced`` on a promotion, ``rolled-back`` on a rollback), and the registered model's
tag ``champion_history`` lists every champion in order (rollbacks included; it never shrinks).

**Concurrency.** The MLflow registry has no transactions and no compare-and-set on tags or
aliases, so two promotions that read the current champion, then move the alias, can both believe
they replaced the same predecessor and overwrite each other's history. Every move therefore runs
under :func:`move_lock`: a lease on the next move number, taken by *creating* a registered model
named ``<model>.promotion-lock.<move>.<attempt>``. Creating a registered model whose name exists
fails atomically in every MLflow backend (the name is the primary key of the SQL table behind a
SQLite file and behind a tracking server alike), so exactly one process wins each name. The loser
waits and retries; the winner reads the current champion, moves the alias, writes its record and
deletes the lock. A lock whose holder died is taken over after its expiry by creating the next
attempt's name (again exactly one winner; names are never reused, so there is no ABA). The only
timing assumption is that a live holder finishes within the lease (:data:`LOCK_TTL_S`, a move takes
well under a second). The holder writes what it is about to do on its lock first, so a move
interrupted after the alias moved is still recorded by whoever takes the lock over.

A version whose gate failed, or that was never gated, is promoted only with ``force`` and a
written justification. Registry stages are deprecated in MLflow: only aliases are used.

This module imports neither TensorFlow nor Keras: moving an alias must be quick.
"""

from __future__ import annotations

import contextlib
import getpass
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

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.tracking import MlflowClient

from melanoma_mlops import tracking, tracking_client
from melanoma_mlops.artifacts import CHALLENGER, CHAMPION
from melanoma_mlops.errors import GateError
from melanoma_mlops.registry.guard import assert_registrable

logger = logging.getLogger(__name__)

HISTORY_TAG = "champion_history"
#: Prefix of the registered-model tags that hold the record, one per move.
LOG_TAG_PREFIX = "champion_log."
#: Actions that make a version champion by promotion (rollback is the other kind of move).
PROMOTE_ACTIONS = ("promote", "force-promote", "auto-promote")
ROLLBACK = "rollback"
#: A lock holder that has not finished after this long is presumed dead and may be superseded.
LOCK_TTL_S = 30.0
#: How long a move waits for another one to finish (longer than the TTL, so a dead holder's lock
#: is taken over rather than waited out in vain).
LOCK_WAIT_S = 90.0
LOCK_SUFFIX = ".promotion-lock."
#: Longest reason kept in the record (MLflow tag values may hold 100,000 characters).
MAX_REASON_CHARS = 4000
#: Gate tags (``gate.<name>``) copied into the record of a move, under these short names.
GATE_FIGURES = {
    "passed": "passed",
    "action": "action",
    "candidate_auc": "auc",
    "candidate_sensitivity": "sensitivity",
    "candidate_specificity": "specificity",
    "champion_version": "vs",
    "champion_auc_same_test": "vs_auc",
    "auc_delta": "auc_delta",
    "n_test": "n_test",
    "decided_at": "decided_at",
}


def who() -> str:
    """The user behind an action: getpass (LOGNAME/USER/..., then the password database), else $USER.

    In a container without a passwd entry for its uid getpass raises, hence the fallback.
    """
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return os.environ.get("USER", "unknown")


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def get_version(client: MlflowClient, model_name: str, version: str) -> ModelVersion:
    try:
        return client.get_model_version(model_name, str(version))
    except MlflowException as exc:
        raise GateError(
            f"{model_name} has no version {version!r} in {tracking_client.tracking_uri()}"
        ) from exc


def alias_version(client: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    """The version behind ``alias``, or None when the alias (or the model) does not exist."""
    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


def version_exists(client: MlflowClient, model_name: str, version: str) -> bool:
    try:
        client.get_model_version(model_name, version)
    except MlflowException:
        return False
    return True


def _model_tags(client: MlflowClient, model_name: str) -> dict[str, str]:
    try:
        return dict(client.get_registered_model(model_name).tags)
    except MlflowException as exc:
        raise GateError(f"no registered model {model_name!r} in {tracking_client.tracking_uri()}") from exc


def _parse_history(model_name: str, raw: str) -> list[str]:
    try:
        history = json.loads(raw)
    except json.JSONDecodeError:
        logger.warning(
            "tag %s of %s is not JSON (%r); treating the history as empty", HISTORY_TAG, model_name, raw
        )
        return []
    return [str(v) for v in history] if isinstance(history, list) else []


def champion_history(client: MlflowClient, model_name: str) -> list[str]:
    """Every version that has been champion, in order (rollbacks included; the tag never shrinks)."""
    return _parse_history(model_name, _model_tags(client, model_name).get(HISTORY_TAG, "[]"))


# ---------------------------------------------------------------------------------------------
# the record: one registered-model tag per move
# ---------------------------------------------------------------------------------------------


def _log_key(n: int) -> str:
    return f"{LOG_TAG_PREFIX}{n:06d}"


def _log_entries(model_name: str, tags: dict[str, str]) -> list[dict[str, Any]]:
    entries = []
    for key, value in tags.items():
        if not key.startswith(LOG_TAG_PREFIX) or not key[len(LOG_TAG_PREFIX) :].isdigit():
            continue
        try:
            entry = json.loads(value)
        except json.JSONDecodeError:
            logger.warning("%s: tag %s is not JSON; shown as unreadable", model_name, key)
            entry = {"action": "unreadable", "raw": value[:200]}
        entry["n"] = int(key[len(LOG_TAG_PREFIX) :])
        entries.append(entry)
    return sorted(entries, key=lambda e: e["n"])


def _last_move(tags: dict[str, str]) -> int:
    numbers = [
        int(key[len(LOG_TAG_PREFIX) :])
        for key in tags
        if key.startswith(LOG_TAG_PREFIX) and key[len(LOG_TAG_PREFIX) :].isdigit()
    ]
    return max(numbers, default=0)


def history(client: MlflowClient, model_name: str) -> list[dict[str, Any]]:
    """The champion timeline, oldest first: one dict per move (``n``, ``at``, ``by``, ``action``,
    ``from``, ``to``, ``reason``, ``gate`` and, for forced moves, ``force_reason``).

    A store written before the record existed has only the per-version audit tags: the timeline is
    then rebuilt from them (entries marked ``"legacy": true``, numbered in time order).
    """
    entries = _log_entries(model_name, _model_tags(client, model_name))
    return entries or _legacy_entries(client, model_name)


def _legacy_entries(client: MlflowClient, model_name: str) -> list[dict[str, Any]]:
    """Moves recorded only as ``audit.<k>.*`` version tags (before the record existed)."""
    moves = []
    versions = client.search_model_versions(f"name = {tracking.quote(model_name)}")
    for mv in versions:
        for audit_entry in _audit_from_tags(mv.tags):
            if audit_entry.get("action") in (*PROMOTE_ACTIONS, ROLLBACK):
                previous = audit_entry.get("previous_champion", "none")
                moves.append(
                    {
                        "at": audit_entry.get("at", ""),
                        "by": audit_entry.get("by", ""),
                        "action": audit_entry["action"],
                        "from": "" if previous == "none" else previous,
                        "to": str(mv.version),
                        "reason": audit_entry.get("reason", ""),
                        "legacy": True,
                    }
                )
    moves.sort(key=lambda e: e["at"])
    return [{"n": i, **e} for i, e in enumerate(moves, start=1)]


def rollback_stack(entries: list[dict[str, Any]], prior: list[str] | None = None) -> list[str]:
    """The versions a rollback walks back through, most recent last, replayed from the record.

    A promotion pushes its version; a rollback pops the version it rolled back from. So after
    promote 1, 2, 3 and one rollback the stack is [1, 2]: the next rollback goes to 1, as
    "rollback" means "undo the last promotion", however often it is repeated.
    """
    stack = list(prior or [])
    if entries and isinstance(entries[0].get("prior_history"), list):
        stack = [str(v) for v in entries[0]["prior_history"]]
    for entry in entries:
        to, frm = str(entry.get("to", "")), str(entry.get("from", ""))
        if entry.get("action") == ROLLBACK:
            while stack and stack[-1] == frm:
                stack.pop()
            if not stack or stack[-1] != to:
                stack.append(to)
        elif to and (not stack or stack[-1] != to):
            stack.append(to)
    return stack


# ---------------------------------------------------------------------------------------------
# per-version audit tags (kept for the registry UI's version page and older readers)
# ---------------------------------------------------------------------------------------------


def _next_audit_index(tags: dict[str, str]) -> int:
    indices = [
        int(key.split(".")[1]) for key in tags if key.startswith("audit.") and key.split(".")[1].isdigit()
    ]
    return max(indices, default=0) + 1


def audit(
    client: MlflowClient,
    model_name: str,
    version: str,
    action: str,
    reason: str,
    previous_champion: str,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Append one entry to the version's audit trail (tags ``audit.<n>.*``); return it.

    Called under :func:`move_lock` (the index is read, then written).
    """
    mv = client.get_model_version(model_name, version)
    n = _next_audit_index(mv.tags)
    entry = {
        "action": action,
        "by": who(),
        "at": now(),
        "reason": reason,
        "previous_champion": previous_champion or "none",
        **(extra or {}),
    }
    for key, value in entry.items():
        client.set_model_version_tag(model_name, version, f"audit.{n}.{key}", str(value))
    return {"index": str(n), "version": str(version), **entry}


def _audit_from_tags(tags: dict[str, str]) -> list[dict[str, str]]:
    entries: dict[int, dict[str, str]] = {}
    for key, value in tags.items():
        parts = key.split(".", 2)
        if len(parts) == 3 and parts[0] == "audit" and parts[1].isdigit():
            entries.setdefault(int(parts[1]), {})[parts[2]] = value
    return [entries[i] for i in sorted(entries)]


def audit_trail(client: MlflowClient, model_name: str, version: str) -> list[dict[str, str]]:
    """The version's audit entries in order."""
    return _audit_from_tags(client.get_model_version(model_name, version).tags)


# ---------------------------------------------------------------------------------------------
# the lock: a lease on the next move number
# ---------------------------------------------------------------------------------------------


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
            description="Transient lock of `melanoma-mlops promote` (see registry/champion.py). "
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
    holder: dict[str, str] | None = None
    while True:
        move = _last_move(_model_tags(client, model_name)) + 1
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
                if _last_move(_model_tags(client, model_name)) >= move:
                    # Our read of the record was stale, or the dead holder's move is recorded now.
                    _delete_lock(client, name)
                    break
                return lease
            if holder is None:
                break  # released between our create and our read: re-read the record, retry
            if not _expired(holder):
                break  # a live holder: wait for it
            logger.warning(
                "%s: the promotion lock %s of %s (pid %s on %s) has expired; taking over",
                model_name,
                name,
                holder.get("by", "?"),
                holder.get("pid", "?"),
                holder.get("host", "?"),
            )
            attempt += 1
        if time.monotonic() > deadline:
            who_holds = (
                f"{holder.get('by', '?')} (pid {holder.get('pid', '?')} on {holder.get('host', '?')})"
                if holder
                else "another process"
            )
            raise GateError(
                f"another move of {model_name}@{CHAMPION} by {who_holds} did not finish within {wait_s:g} s; "
                f"retry later (a lock left by a dead process expires {ttl_s:g} s after it was taken)"
            )
        time.sleep(delay * (1 + random.random()))  # jitter: two waiters do not retry in lockstep
        delay = min(delay * 1.5, 0.5)


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
                _write_record(client, lease.model_name, lease.move, entry)
                logger.warning(
                    "%s: recorded move %d (%s -> %s) of a process that died before recording it",
                    lease.model_name,
                    lease.move,
                    entry.get("from") or "none",
                    entry.get("to"),
                )
        _delete_lock(client, name)


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


def _write_record(client: MlflowClient, model_name: str, move: int, entry: dict[str, Any]) -> None:
    body = {k: v for k, v in entry.items() if k != "n"}
    client.set_registered_model_tag(model_name, _log_key(move), json.dumps(body, separators=(",", ":")))


# ---------------------------------------------------------------------------------------------
# moves
# ---------------------------------------------------------------------------------------------


def _gate_figures(tags: dict[str, str]) -> dict[str, str]:
    return {short: tags[f"gate.{name}"] for name, short in GATE_FIGURES.items() if tags.get(f"gate.{name}")}


def _clip(text: str) -> str:
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


def _apply_move(
    client: MlflowClient,
    lease: Lease,
    *,
    target: str,
    previous: str,
    action: str,
    reason: str,
    extra: dict[str, str],
    model_tags: dict[str, str],
) -> dict[str, str]:
    """Under ``lease``: move the alias, write both versions' audit entries and the record."""
    model_name = lease.model_name
    target_mv = client.get_model_version(model_name, target)
    entry: dict[str, Any] = {
        "at": now(),
        "by": who(),
        "action": action,
        "from": previous,
        "to": target,
        "reason": _clip(reason),
        **{k: v for k, v in extra.items() if k not in ("gate_passed",)},
        "gate": _gate_figures(target_mv.tags),
    }
    history_tag = _parse_history(model_name, model_tags.get(HISTORY_TAG, "[]"))
    if lease.move == 1 and history_tag:
        entry["prior_history"] = history_tag  # champions from before the record existed
    # Intent first, on the lock itself: if we die after moving the alias, whoever takes the lock
    # over finds what we did and records it (see _recover).
    client.set_registered_model_tag(lease.name, "intent", json.dumps(entry, separators=(",", ":")))
    lease.intent_written = True
    client.set_registered_model_alias(model_name, CHAMPION, target)
    audit_extra = {"move": str(lease.move), **extra}
    if action == ROLLBACK:
        if previous:
            audit(
                client,
                model_name,
                previous,
                "rolled-back",
                reason,
                previous,
                {**audit_extra, "replaced_by": target},
            )
        result = audit(client, model_name, target, action, reason, previous, audit_extra)
    else:
        result = audit(client, model_name, target, action, reason, previous, audit_extra)
        if previous and version_exists(client, model_name, previous):
            audit(
                client,
                model_name,
                previous,
                "replaced",
                reason,
                previous,
                {"move": str(lease.move), "replaced_by": target},
            )
    _write_record(client, model_name, lease.move, entry)  # the commit point of the move
    client.set_registered_model_tag(model_name, HISTORY_TAG, json.dumps([*history_tag, target]))
    logger.info(
        "%s: @%s %s -> %s (%s, move %d) by %s: %s",
        model_name,
        CHAMPION,
        previous or "none",
        target,
        action,
        lease.move,
        entry["by"],
        reason,
    )
    return {**result, "move": str(lease.move)}


def set_champion(
    client: MlflowClient,
    model_name: str,
    version: str,
    *,
    action: str,
    reason: str,
    extra: dict[str, str] | None = None,
    refuse_if_champion: bool = False,
) -> dict[str, str]:
    """Point ``champion`` at ``version`` under the move lock; record the move; return the audit entry.

    The predecessor is read under the lock, so it is the version really replaced. When
    ``version`` is already champion by the time the lock is held (someone else promoted it
    meanwhile) nothing is moved or recorded and the entry says ``"action": "unchanged"``;
    ``refuse_if_champion`` raises GateError instead (what a person asking for the move wants).

    ``challenger`` keeps pointing at the newest registered candidate, so
    ``models:/NAME@challenger`` always resolves after a pipeline run.
    """
    version = str(version)
    with move_lock(client, model_name) as lease:
        model_tags = _model_tags(client, model_name)
        current = alias_version(client, model_name, CHAMPION)
        previous = str(current.version) if current else ""
        if previous == version:
            if refuse_if_champion:
                raise GateError(f"{model_name} version {version} is already @{CHAMPION}")
            logger.info("%s version %s is already @%s: nothing to move", model_name, version, CHAMPION)
            return {
                "version": version,
                "action": "unchanged",
                "previous_champion": version,
                "by": who(),
                "at": now(),
            }
        return _apply_move(
            client,
            lease,
            target=version,
            previous=previous,
            action=action,
            reason=reason,
            extra=dict(extra or {}),
            model_tags=model_tags,
        )


def refuse_leaky(client: MlflowClient, mv: ModelVersion) -> None:
    """Raise LeakyRunError if the version was produced under the ablation's leaky negative control.

    Such a model was tested on copies of its training images; no gate result or ``--force`` can
    make it a champion. Checked again here, after register, as defence in depth.
    """
    if mv.run_id:
        try:
            assert_registrable(mv.run_id, client)
        except MlflowException as exc:  # the run was deleted: nothing to walk
            logger.warning("lineage of %s v%s not checked: %s", mv.name, mv.version, exc)


def promote(
    model_name: str,
    version: str | int | None,
    reason: str,
    force: bool = False,
    force_reason: str = "",
) -> dict[str, str]:
    """Point ``champion`` at ``version`` (None: the current challenger); return the audit entry.

    Refuses a version whose gate failed or that was never gated, unless ``force`` with a
    ``force_reason``: overriding the evidence is allowed, but only on the record. ``force`` always
    needs its reason, whatever the gate said.
    """
    if not reason.strip():
        raise GateError("a reason is required to promote a model (--reason): it goes into the audit trail")
    client = MlflowClient()
    if version is None:
        challenger = alias_version(client, model_name, CHALLENGER)
        if challenger is None:
            raise GateError(f"{model_name} has no @{CHALLENGER}: name the version to promote (--version N)")
        current = alias_version(client, model_name, CHAMPION)
        if current is not None and str(current.version) == str(challenger.version):
            raise GateError(
                f"{model_name}@{CHALLENGER} (version {challenger.version}) is already @{CHAMPION}: "
                "name another version with --version N"
            )
        version = challenger.version  # str() below
    version = str(version)
    mv = get_version(client, model_name, version)
    refuse_leaky(client, mv)
    gate = mv.tags.get("gate.passed")
    extra = {"gate_passed": gate or "not gated"}
    why = (
        f"its gate failed ({mv.tags.get('gate.reason', 'no reason recorded')})"
        if gate == "false"
        else "it was never gated against the champion"
    )
    if gate != "true" and not force:
        raise GateError(
            f"refusing to promote {model_name} version {version}: {why}. To override, pass --force "
            "with --force-reason explaining why"
        )
    if force and not force_reason.strip():
        because = why if gate != "true" else "its gate passed, so --force overrides nothing"
        raise GateError(f"--force on {model_name} version {version} needs --force-reason ({because})")
    if force:
        extra |= {"forced": "true", "force_reason": _clip(force_reason.strip())}
    return set_champion(
        client,
        model_name,
        version,
        action="force-promote" if force else "promote",
        reason=reason.strip(),
        extra=extra,
        refuse_if_champion=True,
    )


def rollback(model_name: str, reason: str) -> dict[str, str]:
    """Point ``champion`` back at the champion before the current one; return the audit entry.

    The target is computed from the record (:func:`rollback_stack`), so a second rollback goes one
    further back; versions deleted from the registry since are skipped. The record itself only
    grows: the rollback is one more move.
    """
    if not reason.strip():
        raise GateError("a reason is required to roll back (--reason): it goes into the audit trail")
    client = MlflowClient()
    with move_lock(client, model_name) as lease:
        model_tags = _model_tags(client, model_name)
        current = alias_version(client, model_name, CHAMPION)
        if current is None:
            raise GateError(f"{model_name} has no @{CHAMPION} to roll back")
        current_v = str(current.version)
        entries = _log_entries(model_name, model_tags)
        prior = [] if entries else _parse_history(model_name, model_tags.get(HISTORY_TAG, "[]"))
        stack = rollback_stack(entries, prior)
        while stack and stack[-1] == current_v:
            stack.pop()
        target = None
        while stack:
            if version_exists(client, model_name, stack[-1]):
                target = stack[-1]
                break
            logger.warning(
                "%s version %s in the champion history no longer exists: skipped", model_name, stack.pop()
            )
        if target is None:
            raise GateError(
                f"{model_name}: no earlier champion recorded before version {current_v}; "
                "promote a specific version instead (melanoma-mlops promote --version N --reason ...)"
            )
        return _apply_move(
            client,
            lease,
            target=target,
            previous=current_v,
            action=ROLLBACK,
            reason=reason.strip(),
            extra={},
            model_tags=model_tags,
        )


def describe(model_name: str) -> dict[str, Any]:
    """Aliases, history and each aliased version's gate tags: what ``promote`` prints after acting."""
    client = MlflowClient()
    out: dict[str, Any] = {"model_name": model_name, "history": champion_history(client, model_name)}
    for alias in (CHAMPION, CHALLENGER):
        mv = alias_version(client, model_name, alias)
        if mv is not None:
            out[alias] = {"version": str(mv.version), "gate.passed": mv.tags.get("gate.passed", "")}
        else:
            out[alias] = None
    return out
