"""The champion record: one registered-model tag per move of ``@champion``, never rewritten.

Every move is a tag ``champion_log.<NNNNNN>`` whose value is a compact JSON object (move number,
when, who, action, from which version to which, why, the gate figures of the new champion). A move
writes a new key and never rewrites an old one, so the record only grows; ``melanoma-mlops
history`` prints it. Rollback targets are computed by replaying it (:func:`rollback_stack`). The
registered model's tag ``champion_history`` lists every champion in order (rollbacks included; it
never shrinks), for the registry UI and older readers.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from mlflow.tracking import MlflowClient

from melanoma_mlops import tracking
from melanoma_mlops.registry.audit_tags import entries_from_tags
from melanoma_mlops.registry.lookup import model_tags
from melanoma_mlops.registry.stamp import now, who

logger = logging.getLogger(__name__)

HISTORY_TAG = "champion_history"
#: Prefix of the registered-model tags that hold the record, one per move.
LOG_TAG_PREFIX = "champion_log."
#: Actions that make a version champion by promotion (rollback is the other kind of move).
PROMOTE_ACTIONS = ("promote", "force-promote", "auto-promote")
ROLLBACK = "rollback"
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


def parse_history(model_name: str, raw: str) -> list[str]:
    """The ``champion_history`` tag's versions; a damaged tag reads as empty (with a warning)."""
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
    return parse_history(model_name, model_tags(client, model_name).get(HISTORY_TAG, "[]"))


def _log_key(n: int) -> str:
    return f"{LOG_TAG_PREFIX}{n:06d}"


def log_entries(model_name: str, tags: dict[str, str]) -> list[dict[str, Any]]:
    """The moves held in the registered model's ``tags``, by move number."""
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


def last_move(tags: dict[str, str]) -> int:
    """The number of the last recorded move (0: none yet)."""
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
    entries = log_entries(model_name, model_tags(client, model_name))
    return entries or _legacy_entries(client, model_name)


def _legacy_entries(client: MlflowClient, model_name: str) -> list[dict[str, Any]]:
    """Moves recorded only as ``audit.<k>.*`` version tags (before the record existed)."""
    moves = []
    versions = client.search_model_versions(f"name = {tracking.quote(model_name)}")
    for mv in versions:
        for audit_entry in entries_from_tags(mv.tags):
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


def clip(text: str) -> str:
    """``text`` cut to :data:`MAX_REASON_CHARS` (a pasted log must not bloat every later read)."""
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


def _gate_figures(tags: dict[str, str]) -> dict[str, str]:
    return {short: tags[f"gate.{name}"] for name, short in GATE_FIGURES.items() if tags.get(f"gate.{name}")}


def new_entry(
    *,
    action: str,
    previous: str,
    target: str,
    reason: str,
    extra: dict[str, str],
    target_tags: dict[str, str],
    prior_history: list[str] | None = None,
) -> dict[str, Any]:
    """One move as the record keeps it, stamped now; ``target_tags`` give the new champion's gate figures.

    ``prior_history`` (the first move only) keeps the champions from before the record existed.
    """
    entry: dict[str, Any] = {
        "at": now(),
        "by": who(),
        "action": action,
        "from": previous,
        "to": target,
        "reason": clip(reason),
        **{k: v for k, v in extra.items() if k not in ("gate_passed",)},
        "gate": _gate_figures(target_tags),
    }
    if prior_history:
        entry["prior_history"] = prior_history
    return entry


def write_record(client: MlflowClient, model_name: str, move: int, entry: dict[str, Any]) -> None:
    """Write move ``move``: the commit point of a move (its key is never written again)."""
    body = {k: v for k, v in entry.items() if k != "n"}
    client.set_registered_model_tag(model_name, _log_key(move), json.dumps(body, separators=(",", ":")))
