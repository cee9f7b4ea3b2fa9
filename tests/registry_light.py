"""A registry without models: registered versions that only carry tags, for the alias-moving tests.

Promotion, rollback and history never load a model, so their concurrency and record tests do not
need :mod:`registry_helpers`' trained stand-ins (TensorFlow, ~1 min). A version here points at an
artifact path of one empty run (a tracking server accepts no other local source), tagged as the
gate would tag it. Nothing here imports TensorFlow: the tests that assert promotion stays
TensorFlow-free use it.

tests/ has no ``__init__.py``, so test modules import this as ``import registry_light``.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from melanoma_mlops.artifacts import CHAMPION
from melanoma_mlops.registry import audit_tags, lock, lookup, record


def store_uri(root: Path) -> str:
    (root / "mlruns").mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"


def make_model(client: MlflowClient, root: Path, name: str, versions: int, gate_passed: str = "true") -> None:
    """``name`` with ``versions`` versions, each tagged ``gate.passed`` (and some gate figures)."""
    client.create_registered_model(name)
    add_versions(client, root, name, versions, gate_passed)


def add_versions(
    client: MlflowClient, root: Path, name: str, count: int, gate_passed: str = "true"
) -> list[str]:
    made = []
    run_id = client.create_run("0").info.run_id
    client.set_terminated(run_id)
    for _ in range(count):
        mv = client.create_model_version(name, f"runs:/{run_id}/model-{os.urandom(4).hex()}", run_id=run_id)
        version = str(mv.version)
        tags = {"gate.passed": gate_passed, "gate.candidate_auc": f"0.{80 + int(version) % 20:02d}"}
        if gate_passed == "false":
            tags["gate.reason"] = "failed: AUC below the limit"
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
        made.append(version)
    return made


MAIN = "import sys; from melanoma_pipelines.cli import main; sys.exit(main())"


def cli_env(uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy")}
    env |= {"MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    return env


def cli(argv: list[str], uri: str) -> subprocess.Popen[str]:
    """``melanoma-mlops ARGV`` as a separate process on the store at ``uri`` (not waited for)."""
    return subprocess.Popen(
        [sys.executable, "-c", MAIN, *argv],
        env=cli_env(uri),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# The consistency checks of the record tests (tests/unit and tests/integration alike).
def champion_of(client: MlflowClient, name: str) -> str | None:
    mv = lookup.alias_version(client, name, CHAMPION)
    return str(mv.version) if mv else None


def assert_consistent(client: MlflowClient, name: str) -> list[dict]:
    """The record, the history tag, the alias and both versions' audit entries tell one story."""
    moves = record.history(client, name)
    assert [m["n"] for m in moves] == list(range(1, len(moves) + 1)), "a move number is missing"
    for before, after in itertools.pairwise(moves):
        assert after["from"] == before["to"], (
            f"move {after['n']} replaced {after['from']}, not {before['to']}"
        )
    assert record.champion_history(client, name) == [m["to"] for m in moves]
    assert champion_of(client, name) == (moves[-1]["to"] if moves else None)
    for move in moves:
        n = str(move["n"])
        gained = [e for e in audit_tags.audit_trail(client, name, move["to"]) if e.get("move") == n]
        assert len(gained) == 1 and gained[0]["previous_champion"] == (move["from"] or "none"), move
        if move["from"]:
            lost = [e for e in audit_tags.audit_trail(client, name, move["from"]) if e.get("move") == n]
            assert [e["action"] for e in lost] == [
                "rolled-back" if move["action"] == "rollback" else "replaced"
            ], move
    leftover = [m.name for m in client.search_registered_models() if lock.LOCK_SUFFIX in m.name]
    assert leftover == [], "a lock outlived its move"
    return moves
