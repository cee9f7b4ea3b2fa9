"""The MLflow server start command: unit tests of the command line (split from
tests/integration/test_mlflow_server.py, which starts the command and real servers)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from melanoma_mlops import tracking_server as ms

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "components" / "melanoma_mlops" / "tracking_server"
AUTH_TEMPLATE = MODULE_DIR / "basic_auth.ini"


def _after(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_local_command_uses_sqlite_and_a_local_artifact_folder():
    cmd = ms.build_server_command(
        ms.DEFAULT_BACKEND_STORE_URI, ms.DEFAULT_ARTIFACTS_DESTINATION, "127.0.0.1", 5000
    )
    assert cmd[:4] == [sys.executable, "-m", "mlflow", "server"]
    assert _after(cmd, "--backend-store-uri") == "sqlite:///mlruns/mlflow.db"
    assert _after(cmd, "--artifacts-destination") == "./mlruns/artifacts"
    assert "--serve-artifacts" in cmd
    assert _after(cmd, "--host") == "127.0.0.1"
    assert _after(cmd, "--port") == "5000"
    assert _after(cmd, "--workers") == "1"
    assert "--app-name" not in cmd
    assert "--allowed-hosts" not in cmd


def test_cluster_command_uses_postgres_s3_auth_and_allowed_hosts():
    cmd = ms.build_server_command(
        "postgresql://mlflow:pw@postgres:5432/mlflow",
        "s3://mlflow/artifacts",
        "0.0.0.0",
        5000,
        workers=2,
        auth=True,
        allowed_hosts="mlflow,mlflow:*",
    )
    assert _after(cmd, "--backend-store-uri").startswith("postgresql://")
    assert _after(cmd, "--artifacts-destination") == "s3://mlflow/artifacts"
    assert "--serve-artifacts" in cmd
    assert _after(cmd, "--workers") == "2"
    assert _after(cmd, "--app-name") == "basic-auth"
    assert _after(cmd, "--allowed-hosts") == "mlflow,mlflow:*"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend_store_uri": ""}, "backend store"),
        ({"artifacts_destination": ""}, "artifacts destination"),
        ({"port": 0}, "port"),
        ({"port": 70000}, "port"),
        ({"workers": 0}, "workers"),
    ],
)
def test_bad_options_are_refused_with_a_reason(kwargs, message):
    args = {
        "backend_store_uri": "sqlite:///x.db",
        "artifacts_destination": "./a",
        "host": "127.0.0.1",
        "port": 5000,
        **kwargs,
    }
    with pytest.raises(ms.ServerConfigError, match=message):
        ms.build_server_command(**args)


def test_main_reads_its_defaults_from_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI", "postgresql://u:p@db/mlflow")
    monkeypatch.setenv("MLFLOW_ARTIFACTS_DESTINATION", "s3://bucket/prefix")
    monkeypatch.setenv("MLFLOW_HOST", "0.0.0.0")
    monkeypatch.setenv("MLFLOW_PORT", "5001")
    monkeypatch.setenv("MLFLOW_AUTH", "true")
    monkeypatch.setenv("MLFLOW_SERVER_ALLOWED_HOSTS", "mlflow:*")
    assert ms.main(["--print-command"]) == 0
    cmd = capsys.readouterr().out.split()
    # The printed command masks the password (it is for people and logs; the server gets the real one).
    assert _after(cmd, "--backend-store-uri") == "postgresql://u:***@db/mlflow"
    assert _after(cmd, "--artifacts-destination") == "s3://bucket/prefix"
    assert _after(cmd, "--host") == "0.0.0.0"
    assert _after(cmd, "--port") == "5001"
    assert _after(cmd, "--app-name") == "basic-auth"
    assert _after(cmd, "--allowed-hosts") == "mlflow:*"


def test_flags_win_over_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_PORT", "5001")
    monkeypatch.setenv("MLFLOW_AUTH", "true")
    assert ms.main(["--print-command", "--port", "6000", "--no-auth"]) == 0
    cmd = capsys.readouterr().out.split()
    assert _after(cmd, "--port") == "6000"
    assert "--app-name" not in cmd


def test_a_malformed_environment_value_is_named(monkeypatch):
    monkeypatch.setenv("MLFLOW_AUTH", "maybe")
    with pytest.raises(ms.ServerConfigError, match="MLFLOW_AUTH"):
        ms.build_parser()


def test_auth_template_is_rendered_privately_without_secrets_in_the_repo(tmp_path):
    template_text = AUTH_TEMPLATE.read_text()
    assert "admin_password" not in template_text.split("[mlflow]", 1)[1]  # it comes from the environment
    uri = "postgresql://mlflow:s3cret@postgres:5432/mlflow_auth"
    rendered = ms.render_auth_config(AUTH_TEMPLATE, tmp_path / "cfg", {"MLFLOW_AUTH_DATABASE_URI": uri})
    assert f"database_uri = {uri}" in rendered.read_text()
    assert (rendered.stat().st_mode & 0o777) == 0o600
    assert "$" not in rendered.read_text()


def test_auth_template_defaults_to_a_local_sqlite_user_store(tmp_path):
    rendered = ms.render_auth_config(AUTH_TEMPLATE, tmp_path, {})
    assert f"database_uri = {ms.DEFAULT_AUTH_DATABASE_URI}" in rendered.read_text()


def test_a_template_placeholder_without_value_is_reported(tmp_path):
    template = tmp_path / "t.ini"
    template.write_text("[mlflow]\ndatabase_uri = ${NOT_SET_ANYWHERE}\n")
    with pytest.raises(ms.ServerConfigError, match="NOT_SET_ANYWHERE"):
        ms.render_auth_config(template, tmp_path / "out", {})


def test_the_default_auth_template_is_the_package_data():
    assert ms.default_auth_template() == AUTH_TEMPLATE
