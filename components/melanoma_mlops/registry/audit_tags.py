"""Per-version audit tags ``audit.<n>.action|by|at|reason|previous_champion|...``.

Kept for the registry UI's version page and older readers: every move of ``@champion`` also
writes one entry on the version gaining the alias and one on the version losing it. The record of
moves itself (:mod:`melanoma_mlops.registry.record`) is what ``history`` and rollback read.
"""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from melanoma_mlops.registry.stamp import now, who


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

    Called under :func:`melanoma_mlops.registry.lock.move_lock` (the index is read, then written).
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


def entries_from_tags(tags: dict[str, str]) -> list[dict[str, str]]:
    """The audit entries held in a version's tags, in order."""
    entries: dict[int, dict[str, str]] = {}
    for key, value in tags.items():
        parts = key.split(".", 2)
        if len(parts) == 3 and parts[0] == "audit" and parts[1].isdigit():
            entries.setdefault(int(parts[1]), {})[parts[2]] = value
    return [entries[i] for i in sorted(entries)]


def audit_trail(client: MlflowClient, model_name: str, version: str) -> list[dict[str, str]]:
    """The version's audit entries in order."""
    return entries_from_tags(client.get_model_version(model_name, version).tags)
