"""The tracking server's secrets as files: the admin password goes into the 0600 auth config (never the
server's environment), the Flask key only to the ``mlflow server`` process, and the "starting:" log
line shows no password."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from melanoma_mlops import tracking_server as ts

PASSWORD = "s3cret%pass;word"  # "%" would break configparser's interpolation if written raw
FLASK_KEY = "f1a5c0" * 8


@pytest.fixture
def exec_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], dict[str, str]]]:
    calls: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr(ts.os, "execve", lambda path, argv, env: calls.append((list(argv), dict(env))))
    return calls


def _secret(tmp_path: Path, name: str, value: str) -> Path:
    path = tmp_path / "secrets" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(value + "\n")
    return path


def test_secret_files_are_read_and_checked(tmp_path: Path) -> None:
    env = {"X_FILE": str(_secret(tmp_path, "x", "value"))}
    assert ts.read_secret_file(env, "X_FILE") == "value"
    assert ts.read_secret_file({}, "X_FILE") is None
    with pytest.raises(ts.ServerConfigError, match="cannot read"):
        ts.read_secret_file({"X_FILE": str(tmp_path / "missing")}, "X_FILE")
    with pytest.raises(ts.ServerConfigError, match="empty"):
        ts.read_secret_file({"X_FILE": str(_secret(tmp_path, "empty", ""))}, "X_FILE")


def test_the_admin_password_is_written_into_the_private_auth_config(tmp_path: Path, monkeypatch) -> None:
    from mlflow.server.auth.config import read_auth_config

    rendered = ts.render_auth_config(
        ts.default_auth_template(), tmp_path / "auth", {}, admin_password=PASSWORD
    )
    assert stat.S_IMODE(rendered.stat().st_mode) == 0o600
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(rendered))
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    assert read_auth_config().admin_password == PASSWORD  # what MLflow itself reads back


def test_main_keeps_both_secrets_out_of_the_environment_it_was_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exec_calls, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD_FILE", str(_secret(tmp_path, "admin", PASSWORD)))
    monkeypatch.setenv("MLFLOW_FLASK_SERVER_SECRET_KEY_FILE", str(_secret(tmp_path, "flask", FLASK_KEY)))
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("MLFLOW_FLASK_SERVER_SECRET_KEY", raising=False)
    monkeypatch.delenv("MLFLOW_AUTH_CONFIG_PATH", raising=False)
    monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI", "postgresql+psycopg2://mlflow:dbpass@postgres:5432/mlflow")
    with caplog.at_level(logging.INFO, logger=ts.__name__):
        ts.main(["--auth"])
    ((argv, env),) = exec_calls
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" not in env
    assert PASSWORD not in "".join(env.values())
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == FLASK_KEY  # for the server process only
    config = Path(env["MLFLOW_AUTH_CONFIG_PATH"])
    assert "admin_password = s3cret%%pass;word" in config.read_text()
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    started = [r.getMessage() for r in caplog.records if r.getMessage().startswith("starting:")]
    assert started and "dbpass" not in started[0] and "mlflow:***@postgres" in started[0]
    assert "dbpass" in " ".join(argv)  # the server itself gets the real URI


def test_a_password_file_cannot_go_into_a_config_of_ones_own(tmp_path: Path, monkeypatch, exec_calls) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD_FILE", str(_secret(tmp_path, "admin", PASSWORD)))
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(tmp_path / "mine.ini"))
    assert ts.main(["--auth"]) == 2
    assert exec_calls == []


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("postgresql://u:p@db/x", "postgresql://u:***@db/x"),
        ("sqlite:///mlruns/mlflow.db", "sqlite:///mlruns/mlflow.db"),
        ("postgresql://db/x?password=abc&sslmode=require", "postgresql://db/x?password=***&sslmode=require"),
        ("s3://bucket/prefix", "s3://bucket/prefix"),
    ],
)
def test_mask_secrets(text: str, masked: str) -> None:
    assert ts.mask_secrets(text) == masked
