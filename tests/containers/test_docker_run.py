"""``melanoma-mlops run --runner docker``: every step of the DAG runs in a container of the pipeline
image, tracking to an MLflow server that itself runs in the MLflow image and proxies the artifacts to
S3 (moto on loopback), with the data read from S3 as a cluster reads it.

The run must end like a local one: a parent run with one nested run per step (each tagged with the
image it ran in), a registered version with @challenger that loads and predicts, the gate decision.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from docker_env import ensure_images, image_inspect, require_docker
from servers import DUMMY_AWS_ENV, create_bucket, free_port, list_keys, moto_s3, s3_client

from melanoma_mlops import MODEL_NAME
from melanoma_pipelines import cli

pytestmark = pytest.mark.integration

TINY = [
    "--image-size", "32", "--batch-size", "16", "--weights", "none", "--stage1-epochs", "1",
    "--stage2-epochs", "1", "--patience", "1", "--gradcam-samples", "4", "--min-auc", "0",
    "--min-sensitivity", "0",
]  # fmt: skip


def _upload(folder: Path, endpoint: str, bucket: str) -> str:
    client = s3_client(endpoint)
    client.create_bucket(Bucket=bucket)
    for path in folder.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), bucket, f"demo/{path.relative_to(folder).as_posix()}")
    return f"s3://{bucket}/demo"


def test_every_step_runs_in_its_container(
    demo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import docker
    from mlflow.tracking import MlflowClient

    require_docker()
    images = ensure_images(tmp_path / "build")
    port = free_port()
    with moto_s3(tmp_path) as endpoint:
        data = _upload(demo_dir, endpoint, "data")
        create_bucket(endpoint, "mlflow")
        monkeypatch.chdir(tmp_path)
        for key, value in {
            **DUMMY_AWS_ENV,
            "MLFLOW_S3_ENDPOINT_URL": endpoint,
            "AWS_ENDPOINT_URL_S3": endpoint,
        }.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        try:
            code = cli.main(
                [
                    "run", "--runner", "docker", "--data", data, "--run-name", "in-containers",
                    "--mlflow-port", str(port), "--mlflow-artifacts", "s3://mlflow/artifacts", *TINY,
                ]
            )  # fmt: skip
            assert code == 0

            url = f"http://127.0.0.1:{port}"
            monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
            client = MlflowClient(tracking_uri=url)
            exp = client.get_experiment_by_name("melanoma-two-stage")
            (parent,) = client.search_runs(
                [exp.experiment_id], filter_string="attributes.run_name = 'in-containers'"
            )
            steps = client.search_runs(
                [exp.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
            )
            image_id = image_inspect(images.pipeline_cpu)["Id"]
            assert {r.info.run_name for r in steps} >= {
                "validate", "split", "oversample", "stage1", "stage2", "evaluate", "gradcam", "register",
                "promote",
            }  # fmt: skip
            for run in steps:
                assert run.info.status == "FINISHED", run.info.run_name
                assert run.data.tags["runtime"] == "container", run.info.run_name
                assert run.data.tags["runtime.image_id"] == image_id, run.info.run_name
            assert parent.data.tags["data.source"] == data

            version = client.get_model_version_by_alias(MODEL_NAME, "challenger")
            # 40 demo images leave a handful in test: the gate must hold, not promote on noise.
            assert version.tags["gate.action"] == "held", version.tags.get("gate.reason")
            import mlflow

            model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@challenger")
            image = next(demo_dir.glob("benign/*.png")).read_bytes()
            out = model.predict(pd.DataFrame({"image": [image]}))
            assert 0.0 <= float(out["probability"].iloc[0]) <= 1.0
            # The server proxied every artifact to the object store: nothing of the model on disk here.
            keys = list_keys(endpoint, "mlflow", "artifacts/")
            assert any(k.endswith("model.keras") or "keras_model" in k for k in keys), keys[:20]
            if os.getuid() == 0:  # the folders the containers wrote belong to the image's user, not root
                assert (tmp_path / "local_outputs").stat().st_uid == 10001
        finally:
            docker.from_env().containers.get(f"melanoma-mlops-mlflow-{port}").remove(force=True)
