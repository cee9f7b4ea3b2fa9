"""Faults (issue 11) that need a process of their own (split from tests/unit/test_faults.py: a unit
test starts no process): the reaper tells a dead process from a live one, a failed registration
leaves no partial model files (MLflow infers the model's requirements in a subprocess), telemetry
is off in a fresh interpreter."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from melanoma_mlops import artifact_cleanup, heartbeat, tracking


# ------------------------------------------------------------------------------ heartbeats
def _run(client: MlflowClient, name: str, parent: str | None = None, **tags: str) -> str:
    exp = tracking.configure()
    all_tags = {**({"mlflow.parentRunId": parent} if parent else {}), **tags}
    return client.create_run(exp, run_name=name, tags=all_tags).info.run_id


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_reaper_kills_runs_whose_process_is_gone_or_silent_and_spares_live_ones(
    mlflow_store: str,
) -> None:
    client = MlflowClient()
    host = socket.gethostname()
    now = heartbeat._iso(heartbeat._now())
    old = "2020-01-01T00:00:00Z"
    dead = _run(
        client, "dead", **{"heartbeat.host": host, "heartbeat.pid": str(_dead_pid()), "heartbeat.at": now}
    )
    dead_child = _run(client, "dead-child", parent=dead)  # no beat of its own yet: goes with its parent
    silent = _run(
        client, "silent", **{"heartbeat.host": "other-node", "heartbeat.pid": "1", "heartbeat.at": old}
    )
    alive = _run(
        client, "alive", **{"heartbeat.host": host, "heartbeat.pid": str(os.getpid()), "heartbeat.at": now}
    )
    remote = _run(
        client, "remote", **{"heartbeat.host": "other-node", "heartbeat.pid": "1", "heartbeat.at": now}
    )
    assert {r.run_id for r in heartbeat.reap_stale_runs(600, dry_run=True)} == {dead, dead_child, silent}
    assert client.get_run(dead).info.status == "RUNNING"  # a dry run changes nothing
    reaped = {r.run_id: r.reason for r in heartbeat.reap_stale_runs(600)}
    assert "is gone" in reaped[dead] and "no heartbeat from other-node" in reaped[silent]
    assert reaped[dead_child] == f"its parent run {dead} is stale"
    for run_id in (dead, dead_child, silent):
        run = client.get_run(run_id)
        assert run.info.status == "KILLED" and run.data.tags[heartbeat.REAPED_TAG] == reaped[run_id]
    assert client.get_run(alive).info.status == "RUNNING"
    assert client.get_run(remote).info.status == "RUNNING"


# ------------------------------------------------------------------------------ partial models
def test_a_failed_registration_leaves_no_partial_model_files(
    mlflow_store: str, tmp_path: Path, monkeypatch
) -> None:
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return model_input

    payload = tmp_path / "weights.bin"
    payload.write_bytes(os.urandom(1 << 16))
    real = LocalArtifactRepository.log_artifacts

    def fills_up(self, local_dir, artifact_path=None):
        real(self, local_dir, artifact_path)  # the files land, then the store is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(LocalArtifactRepository, "log_artifacts", fills_up)
    client = MlflowClient()
    with mlflow.start_run(experiment_id=tracking.configure()) as run:
        with pytest.raises(OSError, match="No space left"):
            artifact_cleanup.call_removing_failed_models(
                mlflow.pyfunc.log_model, name="model", python_model=Echo(), artifacts={"w": str(payload)}
            )
        models = client.search_logged_models([run.info.experiment_id])
    assert not [m for m in models if str(getattr(m.status, "name", m.status)) == "READY"]
    # The upload had landed (then failed): none of its files is left in the artifact store.
    store = Path(mlflow_store.removeprefix("sqlite:///")).parent / "artifacts"
    assert store.is_dir() and not list(store.rglob("weights.bin")) and not list(store.rglob("MLmodel"))


# ------------------------------------------------------------------------------ telemetry
def test_telemetry_is_off_in_every_process_that_imports_the_package() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK")}
    code = (
        "import json, os, melanoma_mlops, mlflow.telemetry.utils as t;"
        "print(json.dumps([os.environ['MLFLOW_DISABLE_TELEMETRY'], os.environ['DO_NOT_TRACK'],"
        " t.is_telemetry_disabled()]))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["true", "true", True]
