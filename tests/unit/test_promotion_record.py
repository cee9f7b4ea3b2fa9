"""The champion record and the move lock, on a registry of tag-only versions (no TensorFlow).

What tests/unit/test_promotion.py checks with trained models (the gate, the audit trail, the CLI), this
module checks where models do not matter: the append-only record and its replay, concurrent moves
(threads here; two real processes in test_promotion_record_processes.py, which also checks that
promoting never imports TensorFlow), a dead lock holder, a store written before the record existed.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import registry_light as rl
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from registry_light import assert_consistent, champion_of

from melanoma_mlops.artifacts import CHAMPION
from melanoma_mlops.errors import GateError, MelanomaError
from melanoma_mlops.registry import audit_tags, lock, record, stamp
from melanoma_mlops.registry import champion as promotion


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, MlflowClient]:
    import mlflow

    uri = rl.store_uri(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield tmp_path, MlflowClient(tracking_uri=uri)
    mlflow.set_tracking_uri(None)


# ---------------------------------------------------------------------------------------------
# the record
# ---------------------------------------------------------------------------------------------


def test_every_move_is_recorded_and_the_history_never_shrinks(store: tuple[Path, MlflowClient]) -> None:
    root, client = store
    rl.make_model(client, root, "m", 3)

    promotion.promote("m", "1", reason="first")
    promotion.promote("m", "2", reason="better AUC")
    promotion.promote("m", "3", reason="newer data")
    promotion.rollback("m", reason="complaints")
    entry = promotion.rollback("m", reason="still complaints")

    assert (entry["previous_champion"], entry["version"]) == ("2", "1")
    moves = assert_consistent(client, "m")
    assert [(m["action"], m["from"], m["to"]) for m in moves] == [
        ("promote", "", "1"),
        ("promote", "1", "2"),
        ("promote", "2", "3"),
        ("rollback", "3", "2"),
        ("rollback", "2", "1"),
    ]
    assert moves[1]["reason"] == "better AUC" and moves[1]["by"] == stamp.who()
    assert moves[1]["gate"] == {"passed": "true", "auc": "0.82"}
    assert record.champion_history(client, "m") == ["1", "2", "3", "2", "1"]
    with pytest.raises(GateError, match="no earlier champion recorded before version 1"):
        promotion.rollback("m", reason="once more")
    # A record entry is one compact JSON tag: readable in the registry UI as it is.
    raw = client.get_registered_model("m").tags["champion_log.000002"]
    assert json.loads(raw)["to"] == "2" and "\n" not in raw


@pytest.mark.parametrize(
    ("moves", "stack"),
    [
        ([("promote", "", "1"), ("promote", "1", "2"), ("promote", "2", "3")], ["1", "2", "3"]),
        ([("promote", "", "1"), ("promote", "1", "2"), ("rollback", "2", "1")], ["1"]),
        ([("promote", "", "1"), ("promote", "1", "2"), ("promote", "2", "1")], ["1", "2", "1"]),
        (
            [("promote", "", "1"), ("promote", "1", "2"), ("promote", "2", "3"), ("rollback", "3", "2")],
            ["1", "2"],
        ),
    ],
)
def test_rollback_target_is_replayed_from_the_record(
    moves: list[tuple[str, str, str]], stack: list[str]
) -> None:
    entries = [{"action": a, "from": f, "to": t} for a, f, t in moves]
    assert record.rollback_stack(entries) == stack


def test_rollback_skips_versions_deleted_since(store: tuple[Path, MlflowClient]) -> None:
    root, client = store
    rl.make_model(client, root, "m", 3)
    for v in ("1", "2", "3"):
        promotion.promote("m", v, reason=f"v{v}")
    client.delete_model_version("m", "2")

    entry = promotion.rollback("m", reason="v3 is bad")

    assert entry["version"] == "1"


def test_force_always_needs_its_reason(store: tuple[Path, MlflowClient]) -> None:
    root, client = store
    rl.make_model(client, root, "m", 2)
    with pytest.raises(GateError, match=r"needs --force-reason \(its gate passed"):
        promotion.promote("m", "1", reason="x", force=True)
    entry = promotion.promote("m", "1", reason="x", force=True, force_reason="drill")
    assert entry["action"] == "force-promote"
    assert record.history(client, "m")[0]["force_reason"] == "drill"


def test_a_store_written_before_the_record_existed(store: tuple[Path, MlflowClient]) -> None:
    """Old stores have audit.<n>.* version tags and a champion_history tag that rollback popped."""
    root, client = store
    rl.make_model(client, root, "m", 3)
    old = {"1": ("promote", "none", "2026-01-01T10:00:00Z"), "2": ("promote", "1", "2026-01-02T10:00:00Z")}
    for version, (action, previous, at) in old.items():
        for key, value in {
            "action": action,
            "by": "old",
            "at": at,
            "reason": "r",
            "previous_champion": previous,
        }.items():
            client.set_model_version_tag("m", version, f"audit.1.{key}", value)
    client.set_registered_model_alias("m", CHAMPION, "2")
    client.set_registered_model_tag("m", record.HISTORY_TAG, json.dumps(["1", "2"]))

    legacy = record.history(client, "m")
    assert [(m["from"], m["to"], m["legacy"]) for m in legacy] == [("", "1", True), ("1", "2", True)]

    promotion.promote("m", "3", reason="new")
    assert record.champion_history(client, "m") == ["1", "2", "3"]
    assert promotion.rollback("m", reason="back")["version"] == "2"
    assert promotion.rollback("m", reason="back again")["version"] == "1"  # via the old history
    moves = record.history(client, "m")
    assert [m["to"] for m in moves] == ["3", "2", "1"] and moves[0]["prior_history"] == ["1", "2"]


# ---------------------------------------------------------------------------------------------
# the lock
# ---------------------------------------------------------------------------------------------


def test_concurrent_moves_from_threads_serialise(store: tuple[Path, MlflowClient]) -> None:
    root, client = store
    rl.make_model(client, root, "m", 9)
    promotion.promote("m", "1", reason="start")
    results: dict[str, dict[str, str]] = {}
    errors: list[Exception] = []

    def move(version: str, barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            results[version] = promotion.promote("m", version, reason=f"to {version}")
        except (MelanomaError, MlflowException) as exc:  # reported below, from the main thread
            errors.append(exc)

    for pair in (("2", "3"), ("4", "5"), ("6", "7"), ("8", "9")):
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=move, args=(v, barrier)) for v in pair]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
    moves = assert_consistent(client, "m")
    assert len(moves) == 9
    # Each caller was told the predecessor it really replaced.
    for move_ in moves[1:]:
        assert results[move_["to"]]["previous_champion"] == move_["from"]


def test_a_live_lock_makes_the_next_move_wait_then_give_up(store: tuple[Path, MlflowClient]) -> None:
    root, client = store
    rl.make_model(client, root, "m", 2)
    lease = lock.acquire(client, "m")
    try:
        with pytest.raises(GateError, match=r"did not finish within 0\.5 s"):
            lock.acquire(client, "m", wait_s=0.5)
    finally:
        lock.release(client, lease)
    promotion.promote("m", "1", reason="after the lock was released")
    assert champion_of(client, "m") == "1"


def test_the_lock_of_a_dead_holder_is_taken_over_and_its_move_recorded(
    store: tuple[Path, MlflowClient], caplog: pytest.LogCaptureFixture
) -> None:
    """A holder killed after moving the alias but before recording the move (the worst moment)."""
    root, client = store
    rl.make_model(client, root, "m", 3)
    promotion.promote("m", "1", reason="start")
    lease = lock.acquire(client, "m", ttl_s=0.2)
    intent = {
        "at": stamp.now(),
        "by": "ghost",
        "action": "promote",
        "from": "1",
        "to": "2",
        "reason": "r",
    }
    client.set_registered_model_tag(lease.name, "intent", json.dumps(intent))
    client.set_registered_model_alias("m", CHAMPION, "2")
    time.sleep(0.3)  # ... and the holder is gone: its lease expires

    entry = promotion.promote("m", "3", reason="next")

    assert entry["previous_champion"] == "2"
    moves = record.history(client, "m")
    assert [(m["from"], m["to"]) for m in moves] == [("", "1"), ("1", "2"), ("2", "3")]
    assert "after its holder died" in moves[1]["recovered"]
    assert "has expired; taking over" in caplog.text
    assert [m.name for m in client.search_registered_models() if lock.LOCK_SUFFIX in m.name] == []


def test_a_move_that_fails_after_the_alias_moved_is_recorded_by_the_next_one(
    store: tuple[Path, MlflowClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, client = store
    rl.make_model(client, root, "m", 3)
    promotion.promote("m", "1", reason="start")
    monkeypatch.setattr(lock, "LOCK_TTL_S", 0.2)
    real_audit = audit_tags.audit

    def registry_gone(*args: object, **kwargs: object) -> None:
        raise MlflowException("connection refused")

    monkeypatch.setattr(audit_tags, "audit", registry_gone)
    with pytest.raises(MlflowException, match="connection refused"):
        promotion.promote("m", "2", reason="interrupted")
    assert champion_of(client, "m") == "2"  # the alias moved; the record did not get the move
    monkeypatch.setattr(audit_tags, "audit", real_audit)
    time.sleep(0.3)  # the failed holder's lease expires

    promotion.promote("m", "3", reason="next")

    moves = record.history(client, "m")
    assert [(m["from"], m["to"], m["reason"]) for m in moves] == [
        ("", "1", "start"),
        ("1", "2", "interrupted"),
        ("2", "3", "next"),
    ]
    assert "recovered" in moves[1]


def test_promoting_the_champion_again_is_refused_under_the_lock(store: tuple[Path, MlflowClient]) -> None:
    root, client = store
    rl.make_model(client, root, "m", 2)
    promotion.promote("m", "1", reason="x")
    with pytest.raises(GateError, match="already @champion"):
        promotion.promote("m", "1", reason="again")
    # The gate's auto-promotion of a version someone else made champion meanwhile is a no-op.
    entry = promotion.set_champion(client, "m", "1", action="auto-promote", reason="gate passed")
    assert entry["action"] == "unchanged"
    assert len(record.history(client, "m")) == 1


# ---------------------------------------------------------------------------------------------
# the commands
# ---------------------------------------------------------------------------------------------


def test_history_of_a_model_without_moves(
    store: tuple[Path, MlflowClient], capsys: pytest.CaptureFixture[str]
) -> None:
    from registry_helpers import registry_cli

    root, client = store
    rl.make_model(client, root, "m", 1)
    assert registry_cli(["history", "--model-name", "m"]) == 0
    assert "no move recorded yet" in capsys.readouterr().out
    assert registry_cli(["history", "--model-name", "nope"]) == 2
    assert "no registered model 'nope'" in capsys.readouterr().err
    assert registry_cli(["history", "--model-name", "m", "--limit", "0"]) == 2
