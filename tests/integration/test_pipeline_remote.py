"""The cluster path on loopback: a real MLflow server (SQLite backend, artifacts proxied to S3 on
a local moto server), the local DAG talking to it over HTTP, and data read from ``s3://``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from mlflow.tracking import MlflowClient
from servers import DUMMY_AWS_ENV, create_bucket, list_keys, mlflow_server, moto_s3, s3_env

from melanoma_mlops import MODEL_NAME, envvars, storage
from melanoma_mlops.data import validation as validate
from melanoma_pipelines import cli

pytestmark = pytest.mark.integration

ARTIFACT_BUCKET = "mlflow"
DATA_BUCKET = "dermoscopy"


def _upload(endpoint: str, root: Path, bucket: str, prefix: str) -> None:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=DUMMY_AWS_ENV["AWS_DEFAULT_REGION"])
    for path in sorted(root.rglob("*")):
        if path.is_file():
            s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(root).as_posix()}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> Iterator[tuple[str, str]]:
    """(moto endpoint, MLflow URL) with the demo data uploaded to s3://dermoscopy/demo/."""
    tmp = tmp_path_factory.mktemp("stack")
    saved = {k: os.environ.get(k) for k in (*DUMMY_AWS_ENV, "AWS_ENDPOINT_URL_S3", "MLFLOW_TRACKING_URI")}
    with moto_s3(tmp) as endpoint:
        os.environ.update(DUMMY_AWS_ENV)
        os.environ["AWS_ENDPOINT_URL_S3"] = endpoint
        storage_reset = getattr(storage, "reset_clients", None)
        if storage_reset:
            storage_reset()
        create_bucket(endpoint, ARTIFACT_BUCKET)
        create_bucket(endpoint, DATA_BUCKET)
        _upload(endpoint, demo_dir, DATA_BUCKET, "demo")
        with mlflow_server(tmp, f"s3://{ARTIFACT_BUCKET}/artifacts", env=s3_env(endpoint)) as url:
            try:
                yield endpoint, url
            finally:
                envvars.restore(saved)


def test_validate_reads_an_s3_data_source(stack, tmp_path: Path) -> None:
    outcome = validate.validate(f"s3://{DATA_BUCKET}/demo/", 32, tmp_path / "docs")
    assert outcome.success, outcome.failures
    assert len(outcome.manifest) == 40
    assert outcome.manifest["image_uri"].str.startswith(f"s3://{DATA_BUCKET}/demo/").all()
    assert outcome.manifest["mask_uri"].str.startswith("s3://").all()


def test_local_dag_against_the_server_puts_the_model_in_the_bucket(
    stack, tmp_path: Path, monkeypatch
) -> None:
    endpoint, url = stack
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.chdir(tmp_path)
    code = cli.main(
        [
            "run", "--data", f"s3://{DATA_BUCKET}/demo/", "--weights", "none", "--image-size", "32",
            "--stage1-epochs", "1", "--stage2-epochs", "1", "--batch-size", "16", "--gradcam-samples", "4",
            "--run-name", "over-http",
        ]
    )  # fmt: skip
    shutil.rmtree(tmp_path / "local_outputs", ignore_errors=True)
    assert code == 0
    client = MlflowClient(url)
    version = client.get_model_version_by_alias(MODEL_NAME, "challenger")
    assert version.tags["data_fingerprint"]
    keys = list_keys(endpoint, ARTIFACT_BUCKET, "artifacts/")
    assert any(k.endswith("/MLmodel") for k in keys), keys[:20]
    assert any(k.endswith("model.keras") for k in keys)
    assert any(k.endswith("data_docs/index.html") for k in keys)
    assert any(k.endswith("gradcam/gradcam_grid.png") for k in keys)
