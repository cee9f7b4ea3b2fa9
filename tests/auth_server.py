"""A real MLflow tracking server with basic-auth (our ``melanoma-basic-auth`` app, started by
``melanoma_mlops.tracking_server --auth`` as in Kubernetes), its users and a registered model made by
the promotion identity: the fixture of the registry-access tests (server and browser).

Users: ``admin`` (MLflow admin), ``pipeline`` (the promotion identity: creates the experiment and
the model, so it owns both), ``alice`` and ``bob`` (people). The model has two versions tagged as
the gate tags a passed version (:mod:`registry_light`'s idea: no model files, no TensorFlow) and
``@challenger`` on version 2.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from servers import mlflow_server

MODEL = "melanoma-resnet50"
ADMIN = ("admin", "admin-password-not-secret-1")
PASSWORDS = {
    "pipeline": "pipeline-password-1234",
    "alice": "alice-password-1234",
    "bob": "bob-password-12345",
}
SERVER_ENV = {"MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1], "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only-key"}


def login_env(user: str) -> dict[str, str]:
    """The client environment of ``user`` (MLflow reads the credentials from it)."""
    password = ADMIN[1] if user == ADMIN[0] else PASSWORDS[user]
    return {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password}


@contextlib.contextmanager
def as_user(user: str) -> Iterator[None]:
    from melanoma_mlops import envvars

    with envvars.pinned(login_env(user)):
        yield


@contextlib.contextmanager
def auth_server_with_model(tmp: Path) -> Iterator[str]:
    """Start the server, create the users and the model as described above; yield the URL."""
    from mlflow.server import get_app_client
    from mlflow.tracking import MlflowClient

    with mlflow_server(tmp, str(tmp / "artifacts"), SERVER_ENV, auth=True) as url:
        with as_user("admin"):
            auth = get_app_client("basic-auth", tracking_uri=url)
            for user, password in PASSWORDS.items():
                auth.create_user(username=user, password=password)
        with as_user("pipeline"):
            client = MlflowClient(url)
            experiment_id = client.create_experiment("melanoma-two-stage")
            client.create_registered_model(MODEL)
            run_id = client.create_run(experiment_id).info.run_id
            for version in ("1", "2"):
                client.create_model_version(
                    MODEL, f"runs:/{run_id}/model-{version}", run_id=run_id, await_creation_for=0
                )
                for key, value in {"gate.passed": "true", "gate.action": "promoted"}.items():
                    client.set_model_version_tag(MODEL, version, key, value)
            client.set_registered_model_alias(MODEL, "challenger", "2")
        yield url


def cli_env(url: str, user: str) -> dict[str, str]:
    """The environment of a ``melanoma-mlops`` subprocess logged in as ``user``."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy")}
    return (
        env
        | {"MLFLOW_TRACKING_URI": url, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
        | login_env(user)
    )
