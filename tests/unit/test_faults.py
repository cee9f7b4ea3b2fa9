"""Faults (issue 11): a bounded MLflow outage window and one line naming the server; every step failure
surfaces as its own line; heartbeats and the reaper leave no run RUNNING; a failed registration
leaves no partial model files; telemetry is off."""

from __future__ import annotations

import errno
import os
import socket
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from melanoma_mlops import EXPERIMENT_NAME, heartbeat, tracking, tracking_client
from melanoma_pipelines import cli, runtime


# ------------------------------------------------------------------------------ outage window
def test_the_outage_window_not_an_attempt_count_bounds_the_retries() -> None:
    assert tracking_client.retry_settings(0)["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    settings = tracking_client.retry_settings(300)
    assert int(settings["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) == tracking_client.WINDOW_RETRIES
    assert settings["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "1"


def test_client_defaults_never_override_what_the_user_set() -> None:
    env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "9", tracking_client.OUTAGE_ENV: "5"}
    tracking_client.apply_client_defaults(env)
    assert env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "9"
    assert env["MLFLOW_HTTP_REQUEST_TIMEOUT"] == str(tracking_client.DEFAULT_REQUEST_TIMEOUT)
    assert int(env["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"]) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_with_the_server_down_the_cli_says_which_server_and_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], demo_dir: Path
) -> None:
    uri = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv(tracking_client.OUTAGE_ENV, "0")
    for var in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    code = cli.main(["run", "--data", str(demo_dir), "--weights", "none", "--image-size", "32"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith(f"error: cannot reach the MLflow tracking server at {uri}")
    assert "melanoma-mlops mlflow-server" in err[-1] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "local_outputs").exists()  # it stopped before starting any step


# ------------------------------------------------------------------------------ step failures
def test_any_step_failure_becomes_one_line_naming_the_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    errors = tmp_path / "errors"
    monkeypatch.setenv(runtime.ERROR_FILE_ENV, str(errors))

    def full_disk() -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/store/model/data.bin")

    with pytest.raises(SystemExit) as exit_:
        runtime.run_step("register", full_disk)
    assert exit_.value.code == 1
    assert errors.read_text() == (
        "register: OSError: [Errno 28] No space left on device: '/store/model/data.bin'\n"
    )
    assert "Traceback" in capfd.readouterr().err  # the step log keeps the traceback


def test_a_connection_failure_in_a_step_names_the_tracking_server(tmp_path: Path, monkeypatch) -> None:
    import requests

    errors = tmp_path / "errors"
    monkeypatch.setenv(runtime.ERROR_FILE_ENV, str(errors))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")

    def down() -> None:
        try:
            raise requests.exceptions.ConnectionError(
                "Max retries exceeded with url: /api/2.0/mlflow/runs/get"
            )
        except requests.exceptions.ConnectionError as exc:
            raise mlflow.exceptions.MlflowException(f"API request to x failed with exception {exc}") from exc

    with pytest.raises(SystemExit):
        runtime.run_step("stage1", down)
    line = errors.read_text()
    assert line.startswith("stage1: cannot reach the MLflow tracking server at http://mlflow.example:5000")


def test_other_errors_are_not_mistaken_for_an_unreachable_server() -> None:
    assert tracking_client.unreachable_message(ValueError("bad value")) is None
    assert tracking_client.unreachable_message(OSError(errno.ENOSPC, "No space left on device")) is None


# ------------------------------------------------------------------------------ heartbeats
def _run(client: MlflowClient, name: str, parent: str | None = None, **tags: str) -> str:
    exp = tracking.configure()
    all_tags = {**({"mlflow.parentRunId": parent} if parent else {}), **tags}
    return client.create_run(exp, run_name=name, tags=all_tags).info.run_id


def test_a_step_run_beats_its_heartbeat_on_itself_and_the_parent(mlflow_store: str, monkeypatch) -> None:
    monkeypatch.setenv(heartbeat.HEARTBEAT_ENV, "1")
    client = MlflowClient()
    parent = tracking.start_pipeline_run("beating")
    with tracking.step_run(parent, "split") as child:
        time.sleep(0.5)
    for run_id in (parent, child):
        tags = client.get_run(run_id).data.tags
        assert tags[heartbeat.HEARTBEAT_HOST_TAG] == socket.gethostname()
        assert tags[heartbeat.HEARTBEAT_PID_TAG] == str(os.getpid())
        assert heartbeat.HEARTBEAT_AT_TAG in tags
    assert client.get_run(child).info.status == "FINISHED"


def test_interrupted_steps_are_killed_failed_ones_failed(mlflow_store: str) -> None:
    client = MlflowClient()
    for exc, status in ((KeyboardInterrupt(), "KILLED"), (ValueError("x"), "FAILED")):
        parent = tracking.start_pipeline_run(f"p-{status}")
        with pytest.raises(type(exc)), tracking.step_run(parent, "stage2") as child:
            raise exc
        assert client.get_run(child).info.status == status
        assert client.get_run(parent).info.status == status


def test_runs_reap_command(mlflow_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    client = MlflowClient()
    run_id = _run(client, "forgotten", **{"heartbeat.at": "2020-01-01T00:00:00Z"})
    assert cli.main(["runs", "reap"]) == 0
    out = capsys.readouterr().out
    assert f"marked KILLED: forgotten ({run_id}, {EXPERIMENT_NAME})" in out
    assert client.get_run(run_id).info.status == "KILLED"


# ------------------------------------------------------------------------------ telemetry
def test_the_local_runner_pins_telemetry_and_the_retry_settings_for_its_steps(monkeypatch) -> None:
    from melanoma_pipelines.local import step_environment

    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    with step_environment():
        assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true" and os.environ["DO_NOT_TRACK"] == "true"
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]


def test_a_step_beats_every_run_above_it(mlflow_store: str, monkeypatch) -> None:
    """An ablation step's runs: step -> trial -> ablation run; the ablation run must look alive too."""
    monkeypatch.setenv(heartbeat.HEARTBEAT_ENV, "1")
    client = MlflowClient()
    ablation = _run(client, "ablation")
    trial = _run(client, "trial", parent=ablation)
    with tracking.step_run(trial, "stage1"):
        time.sleep(0.5)
    assert heartbeat.HEARTBEAT_AT_TAG in client.get_run(ablation).data.tags
    assert tracking.ancestors(client, trial) == [trial, ablation]
