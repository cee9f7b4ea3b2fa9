"""Moving the ``champion`` alias: promote, roll back, and what a move writes, in which order.

Every move runs under the promotion lock (:mod:`melanoma_mlops.registry.lock`), reads the current
champion there, writes its intent on the lock, moves the alias, writes an audit entry on both
versions (:mod:`melanoma_mlops.registry.audit_tags`: ``replaced`` on the version losing
``@champion`` after a promotion, ``rolled-back`` after a rollback) and finally the record of the
move (:mod:`melanoma_mlops.registry.record`), its commit point.

A version whose gate failed, or that was never gated, is promoted only with ``force`` and a
written justification. Registry stages are deprecated in MLflow: only aliases are used.

This module imports neither TensorFlow nor Keras: moving an alias must be quick.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from melanoma_mlops.artifacts import CHALLENGER, CHAMPION
from melanoma_mlops.errors import GateError
from melanoma_mlops.registry import access, audit_tags, record
from melanoma_mlops.registry.guard import assert_registrable
from melanoma_mlops.registry.lock import Lease, move_lock, write_intent
from melanoma_mlops.registry.lookup import alias_version, get_version, model_tags, version_exists
from melanoma_mlops.registry.stamp import now, who

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Move:
    """One move of ``@champion``: from ``previous`` ('' when none) to ``target``, and why."""

    target: str
    previous: str
    action: str
    reason: str
    extra: dict[str, str] = field(default_factory=dict)


def _apply_move(client: MlflowClient, lease: Lease, move: Move, tags: dict[str, str]) -> dict[str, str]:
    """Under ``lease``: move the alias, write both versions' audit entries and the record.

    ``tags`` are the registered model's, read under the lease.
    """
    model_name = lease.model_name
    target_mv = client.get_model_version(model_name, move.target)
    history_tag = record.parse_history(model_name, tags.get(record.HISTORY_TAG, "[]"))
    entry = record.new_entry(
        action=move.action,
        previous=move.previous,
        target=move.target,
        reason=move.reason,
        extra=move.extra,
        target_tags=target_mv.tags,
        # The first move keeps the champions from before the record existed.
        prior_history=history_tag if lease.move == 1 else None,
    )
    write_intent(client, lease, entry)  # before the alias moves: a dead holder's move is recovered
    client.set_registered_model_alias(model_name, CHAMPION, move.target)
    result = _audit_versions(client, lease, move)
    record.write_record(client, model_name, lease.move, entry)  # the commit point of the move
    client.set_registered_model_tag(model_name, record.HISTORY_TAG, json.dumps([*history_tag, move.target]))
    logger.info(
        "%s: @%s %s -> %s (%s, move %d) by %s: %s",
        model_name,
        CHAMPION,
        move.previous or "none",
        move.target,
        move.action,
        lease.move,
        entry["by"],
        move.reason,
    )
    return {**result, "move": str(lease.move)}


def _audit_versions(client: MlflowClient, lease: Lease, move: Move) -> dict[str, str]:
    """The move's audit entries on the version losing ``@champion`` and on its target; the latter's.

    A rollback marks the version it leaves ``rolled-back`` first; a promotion marks its
    predecessor ``replaced`` after (when that version still exists).
    """
    model_name = lease.model_name
    target, previous, action, reason = move.target, move.previous, move.action, move.reason
    audit_extra = {"move": str(lease.move), **move.extra}
    if action == record.ROLLBACK:
        if previous:
            audit_tags.audit(
                client,
                model_name,
                previous,
                "rolled-back",
                reason,
                previous,
                {**audit_extra, "replaced_by": target},
            )
        return audit_tags.audit(client, model_name, target, action, reason, previous, audit_extra)
    result = audit_tags.audit(client, model_name, target, action, reason, previous, audit_extra)
    if previous and version_exists(client, model_name, previous):
        audit_tags.audit(
            client,
            model_name,
            previous,
            "replaced",
            reason,
            previous,
            {"move": str(lease.move), "replaced_by": target},
        )
    return result


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
    access.check_can_move_aliases(client.tracking_uri, model_name)
    with move_lock(client, model_name) as lease:
        tags = model_tags(client, model_name)
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
        return _apply_move(client, lease, Move(version, previous, action, reason, dict(extra or {})), tags)


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
        extra |= {"forced": "true", "force_reason": record.clip(force_reason.strip())}
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

    The target is computed from the record (:func:`melanoma_mlops.registry.record.rollback_stack`),
    so a second rollback goes one further back; versions deleted from the registry since are
    skipped. The record itself only grows: the rollback is one more move.
    """
    if not reason.strip():
        raise GateError("a reason is required to roll back (--reason): it goes into the audit trail")
    client = MlflowClient()
    with move_lock(client, model_name) as lease:
        tags = model_tags(client, model_name)
        current = alias_version(client, model_name, CHAMPION)
        if current is None:
            raise GateError(f"{model_name} has no @{CHAMPION} to roll back")
        current_v = str(current.version)
        entries = record.log_entries(model_name, tags)
        prior = [] if entries else record.parse_history(model_name, tags.get(record.HISTORY_TAG, "[]"))
        stack = record.rollback_stack(entries, prior)
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
        return _apply_move(client, lease, Move(target, current_v, record.ROLLBACK, reason.strip()), tags)


def describe(model_name: str) -> dict[str, Any]:
    """Aliases, history and each aliased version's gate tags: what ``promote`` prints after acting."""
    client = MlflowClient()
    out: dict[str, Any] = {"model_name": model_name, "history": record.champion_history(client, model_name)}
    for alias in (CHAMPION, CHALLENGER):
        mv = alias_version(client, model_name, alias)
        if mv is not None:
            out[alias] = {"version": str(mv.version), "gate.passed": mv.tags.get("gate.passed", "")}
        else:
            out[alias] = None
    return out
