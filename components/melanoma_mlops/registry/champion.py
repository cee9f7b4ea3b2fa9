"""Moving the ``champion`` alias by hand: promote, roll back, and the audit trail of every move.

Manual moves need a reason and leave an audit trail as version tags
``audit.<n>.action|by|at|reason|previous_champion``; the registered model's tag
``champion_history`` (a JSON list of versions, oldest first) is what rollback walks back through.
A version whose gate failed, or that was never gated, is promoted only with ``force`` and a
written justification. Registry stages are deprecated in MLflow: only aliases are used.

This module imports neither TensorFlow nor Keras: moving an alias must be quick.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import time
from typing import Any

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from melanoma_mlops import tracking
from melanoma_mlops.artifacts import CHALLENGER, CHAMPION
from melanoma_mlops.errors import GateError
from melanoma_mlops.registry.guard import assert_registrable

logger = logging.getLogger(__name__)

HISTORY_TAG = "champion_history"
HISTORY_MAX = 100


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
        raise GateError(f"{model_name} has no version {version!r} in {tracking.tracking_uri()}") from exc


def alias_version(client: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    """The version behind ``alias``, or None when the alias (or the model) does not exist."""
    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


def champion_history(client: MlflowClient, model_name: str) -> list[str]:
    """Versions that have been champion, oldest first (the registered model's ``champion_history`` tag)."""
    try:
        raw = client.get_registered_model(model_name).tags.get(HISTORY_TAG, "[]")
    except MlflowException as exc:
        raise GateError(f"no registered model {model_name!r} in {tracking.tracking_uri()}") from exc
    try:
        history = json.loads(raw)
    except json.JSONDecodeError:
        logger.warning(
            "tag %s of %s is not JSON (%r); treating the history as empty", HISTORY_TAG, model_name, raw
        )
        return []
    return [str(v) for v in history] if isinstance(history, list) else []


def _write_history(client: MlflowClient, model_name: str, history: list[str]) -> None:
    client.set_registered_model_tag(model_name, HISTORY_TAG, json.dumps(history[-HISTORY_MAX:]))


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
    """Append one entry to the version's audit trail (tags ``audit.<n>.*``); return it."""
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


def audit_trail(client: MlflowClient, model_name: str, version: str) -> list[dict[str, str]]:
    """The version's audit entries in order."""
    tags = client.get_model_version(model_name, version).tags
    entries: dict[int, dict[str, str]] = {}
    for key, value in tags.items():
        parts = key.split(".", 2)
        if len(parts) == 3 and parts[0] == "audit" and parts[1].isdigit():
            entries.setdefault(int(parts[1]), {})[parts[2]] = value
    return [entries[i] for i in sorted(entries)]


def set_champion(
    client: MlflowClient,
    model_name: str,
    version: str,
    *,
    action: str,
    reason: str,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Point ``champion`` at ``version``, extend the history, write the audit entry.

    ``challenger`` keeps pointing at the newest registered candidate, so
    ``models:/NAME@challenger`` always resolves after a pipeline run; when it is also the champion
    ``promote`` without ``--version`` refuses to re-promote it.
    """
    current = alias_version(client, model_name, CHAMPION)
    previous = str(current.version) if current else ""
    client.set_registered_model_alias(model_name, CHAMPION, version)
    history = champion_history(client, model_name)
    if not history or history[-1] != str(version):
        history.append(str(version))
    _write_history(client, model_name, history)
    entry = audit(client, model_name, version, action, reason, previous, extra)
    logger.info(
        "%s: @%s -> version %s (was %s) by %s: %s",
        model_name,
        CHAMPION,
        version,
        previous or "none",
        entry["by"],
        reason,
    )
    return entry


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
    ``force_reason``: overriding the evidence is allowed, but only on the record.
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
    current = alias_version(client, model_name, CHAMPION)
    if current is not None and str(current.version) == version:
        raise GateError(f"{model_name} version {version} is already @{CHAMPION}")
    gate = mv.tags.get("gate.passed")
    extra = {"gate_passed": gate or "not gated"}
    if gate != "true":
        why = (
            f"its gate failed ({mv.tags.get('gate.reason', 'no reason recorded')})"
            if gate == "false"
            else "it was never gated against the champion"
        )
        if not force:
            raise GateError(
                f"refusing to promote {model_name} version {version}: {why}. To override, pass --force "
                "with --force-reason explaining why"
            )
        if not force_reason.strip():
            raise GateError(f"--force on {model_name} version {version} needs --force-reason: {why}")
    if force:
        extra |= {"forced": "true", "force_reason": force_reason.strip() or "(gate passed; forced anyway)"}
    return set_champion(
        client,
        model_name,
        version,
        action="force-promote" if force else "promote",
        reason=reason.strip(),
        extra=extra,
    )


def rollback(model_name: str, reason: str) -> dict[str, str]:
    """Point ``champion`` back at the previous champion in ``champion_history``; return the audit entry.

    The rolled-back version is popped from the history, so a second rollback goes one further back;
    versions deleted from the registry since are skipped.
    """
    if not reason.strip():
        raise GateError("a reason is required to roll back (--reason): it goes into the audit trail")
    client = MlflowClient()
    current = alias_version(client, model_name, CHAMPION)
    if current is None:
        raise GateError(f"{model_name} has no @{CHAMPION} to roll back")
    current_v = str(current.version)
    history = champion_history(client, model_name)
    while history and history[-1] == current_v:
        history.pop()
    previous = None
    while history:
        if version_exists(client, model_name, history[-1]):
            previous = history[-1]
            break
        logger.warning(
            "%s version %s in the champion history no longer exists: skipped", model_name, history.pop()
        )
    if previous is None:
        raise GateError(
            f"{model_name}: no earlier champion recorded before version {current_v}; "
            "promote a specific version instead (melanoma-mlops promote --version N --reason ...)"
        )
    client.set_registered_model_alias(model_name, CHAMPION, previous)
    _write_history(client, model_name, history)
    audit(
        client,
        model_name,
        current_v,
        "rolled-back",
        reason.strip(),
        current_v,
        {"replaced_by": previous},
    )
    entry = audit(client, model_name, previous, "rollback", reason.strip(), current_v)
    logger.info(
        "%s: rolled @%s back from version %s to %s: %s",
        model_name,
        CHAMPION,
        current_v,
        previous,
        reason,
    )
    return entry


def version_exists(client: MlflowClient, model_name: str, version: str) -> bool:
    try:
        client.get_model_version(model_name, version)
    except MlflowException:
        return False
    return True


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
