"""The MLflow server start command in processes of its own, and real servers over HTTP (the unit tests
of the command line: tests/unit/test_mlflow_server_command.py)."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
from servers import create_bucket, list_keys, mlflow_server, moto_s3, s3_env

from melanoma_mlops import envvars
from melanoma_mlops import tracking_server as ms

REPO = Path(__file__).resolve().parents[2]
DENIED = r"PERMISSION_DENIED|Permission denied|403"


# --------------------------------------------------------------------------- the command, in a process


def test_the_server_module_starts_without_tensorflow_or_mlflow(tmp_path):
    """The server image has mlflow, boto3 and psycopg2 but not the ML stack: the entry point must not
    import TensorFlow (nor mlflow itself before exec'ing ``mlflow server``)."""
    code = (
        "import sys, runpy;"
        "sys.argv = ['x', '--print-command'];"
        "heavy = ('tensorflow', 'keras', 'mlflow', 'boto3');"
        "import melanoma_mlops.tracking_server as m;"
        "assert not [k for k in sys.modules if k.split('.')[0] in heavy], sorted(sys.modules);"
        "sys.exit(m.main(['--print-command']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "-m mlflow server" in result.stdout
    as_module = subprocess.run(
        [sys.executable, "-m", "melanoma_mlops.tracking_server", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert as_module.returncode == 0, as_module.stderr
    assert "--artifacts-destination" in as_module.stdout


def test_the_wheel_ships_the_auth_template(tmp_path):
    """``--auth`` must work from any non-editable install: the template is package data."""
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("melanoma_mlops-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    assert "melanoma_mlops/tracking_server/basic_auth.ini" in names
    assert "melanoma_mlops/tracking_server/__main__.py" in names


# --------------------------------------------------------------------------- integration: real servers


@pytest.mark.integration
def test_ensure_bucket_creates_once(tmp_path):
    with moto_s3(tmp_path) as endpoint, envvars.pinned(s3_env(endpoint)):
        assert ms.ensure_bucket("s3://made-by-job/artifacts", endpoint) is True
        assert ms.ensure_bucket("s3://made-by-job/artifacts", endpoint) is False


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore:Add type hints to the `predict` method")
def test_runs_and_models_go_through_the_server_into_s3(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    import pandas as pd
    from mlflow.pyfunc import PythonModel

    class Doubler(PythonModel):  # stands in for the Keras model: this test is about transport
        def predict(self, context, model_input, params=None):
            return model_input * 2

    bucket, prefix = "mlflow-it", "artifacts"
    with moto_s3(tmp_path) as endpoint:
        create_bucket(endpoint, bucket)
        with mlflow_server(tmp_path, f"s3://{bucket}/{prefix}", s3_env(endpoint)) as url:
            # The client gets no S3 credentials or endpoint: artifacts must go through the proxy.
            for key in ("MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                monkeypatch.delenv(key, raising=False)
            monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
            client = mlflow.MlflowClient(tracking_uri=url)
            exp_id = client.create_experiment("melanoma-two-stage-it")
            assert client.get_experiment(exp_id).artifact_location.startswith("mlflow-artifacts:")

            note = tmp_path / "report.txt"
            note.write_text("auc=0.9\n")
            with mlflow.start_run(experiment_id=exp_id) as run:
                mlflow.log_metric("val_auc", 0.9)
                mlflow.log_artifact(str(note), artifact_path="reports")
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=Doubler(),
                    pip_requirements=["mlflow"],  # skip requirement inference (a slow subprocess)
                    registered_model_name="melanoma-resnet50-it",
                )

            version = client.get_model_version("melanoma-resnet50-it", info.registered_model_version)
            assert version.status == "READY"
            assert client.get_run(run.info.run_id).data.metrics["val_auc"] == 0.9
            client.set_registered_model_alias("melanoma-resnet50-it", "challenger", version.version)
            loaded = mlflow.pyfunc.load_model("models:/melanoma-resnet50-it@challenger")
            assert loaded.predict(pd.DataFrame({"x": [1, 2]}))["x"].tolist() == [2, 4]

            keys = list_keys(endpoint, bucket, prefix + "/")
    assert any(k.endswith("reports/report.txt") for k in keys), keys
    assert any(k.endswith("/MLmodel") for k in keys), keys
    assert all(k.startswith(f"{prefix}/{exp_id}/") for k in keys), keys


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore:Add type hints to the `predict` method")
def test_basic_auth_server_enforces_the_documented_permission_model(tmp_path, monkeypatch):
    """docs/cluster.md: anonymous clients are refused; the `pipeline` user creates and owns the
    experiment and the registered model (and moves aliases); the `app` user can only read."""
    pytest.importorskip("flask_wtf", reason="MLflow's basic-auth app needs mlflow[auth] (Flask-WTF)")
    mlflow = pytest.importorskip("mlflow")
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import PythonModel
    from mlflow.server import get_app_client

    class Echo(PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    def login(user: str, password: str) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)

    admin_password = "not-a-real-secret-123"
    env = {"MLFLOW_AUTH_ADMIN_PASSWORD": admin_password, "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only-key"}
    with mlflow_server(tmp_path, str(tmp_path / "artifacts"), env, auth=True) as url:
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(f"{url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=10)
        assert denied.value.code == 401

        login("admin", admin_password)
        auth = get_app_client("basic-auth", tracking_uri=url)
        auth.create_user(username="pipeline", password="pipeline-pw-123")
        auth.create_user(username="app", password="app-password-1234")

        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        client = mlflow.MlflowClient(tracking_uri=url)
        login("pipeline", "pipeline-pw-123")
        exp_id = client.create_experiment("melanoma-two-stage")
        with mlflow.start_run(experiment_id=exp_id):
            mlflow.log_metric("test_auc", 0.8)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=Echo(),
                pip_requirements=["mlflow"],
                registered_model_name="melanoma-resnet50",
            )
        client.set_registered_model_alias("melanoma-resnet50", "champion", info.registered_model_version)

        login("app", "app-password-1234")
        champion = client.get_model_version_by_alias("melanoma-resnet50", "champion")
        assert champion.version == info.registered_model_version
        assert mlflow.pyfunc.load_model("models:/melanoma-resnet50@champion") is not None
        with pytest.raises(MlflowException, match=DENIED):
            client.set_registered_model_alias("melanoma-resnet50", "champion", "1")
        with pytest.raises(MlflowException, match=DENIED):
            client.create_run(exp_id)
