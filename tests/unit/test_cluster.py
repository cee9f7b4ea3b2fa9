"""The compiled pipeline's Kubernetes settings: GPUs only where training runs, secrets as env,
node selectors and tolerations on GPU steps, caching off everywhere, retries for training.

Step names are written out literally here (not read from the module under test), so a change of
the module's tables cannot make these tests agree with it by construction.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from melanoma_mlops.errors import ConfigError
from melanoma_pipelines import cli
from melanoma_pipelines.cluster import Toleration

TASK_ORDER = (
    "validate",
    "split",
    "oversample",
    "stage1",
    "stage2",
    "evaluate",
    "gradcam",
    "register",
    "promote",
)
GPU_STEPS = ("stage1", "stage2", "evaluate", "gradcam")
TRAINING_STEPS = ("stage1", "stage2")


def _compile(tmp_path: Path, *extra: str) -> tuple[dict, dict]:
    out = tmp_path / "p.yaml"
    code = cli.main(["compile", "-o", str(out), "--image", "reg.example/m:1", *extra])
    assert code == 0
    pipeline, platform = list(yaml.safe_load_all(out.read_text()))
    return pipeline, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


@pytest.fixture
def gpu_spec(tmp_path: Path) -> tuple[dict, dict]:
    return _compile(
        tmp_path,
        "--gpus",
        "2",
        "--node-selector",
        "cloud.example/pool=gpu-a100",
        "--toleration",
        "nvidia.com/gpu:NoSchedule",
        "--toleration",
        "dedicated=ml:NoExecute",
    )


def test_gpus_are_requested_by_the_four_training_and_eval_steps_only(gpu_spec) -> None:
    pipeline, _ = gpu_spec
    executors = pipeline["deploymentSpec"]["executors"]
    for step in TASK_ORDER:
        resources = executors[f"exec-{step}"]["container"]["resources"]
        if step in GPU_STEPS:
            assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu", step
            assert resources["accelerator"]["resourceCount"] == "2", step
        else:
            assert "accelerator" not in resources, step
        for key in ("resourceCpuRequest", "resourceCpuLimit", "resourceMemoryRequest", "resourceMemoryLimit"):
            assert key in resources, (step, key)


def test_gpu_steps_get_node_selector_and_tolerations(gpu_spec) -> None:
    _, k8s = gpu_spec
    for step in TASK_ORDER:
        spec = k8s[f"exec-{step}"]
        if step in GPU_STEPS:
            assert spec["nodeSelector"]["labels"] == {"cloud.example/pool": "gpu-a100"}
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
                "tolerations"
            ]
            assert {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoExecute"} in spec[
                "tolerations"
            ]
        else:
            assert "nodeSelector" not in spec and "tolerations" not in spec


def test_credentials_come_from_secrets_never_from_parameters(gpu_spec) -> None:
    pipeline, k8s = gpu_spec
    for step in TASK_ORDER:
        spec = k8s[f"exec-{step}"]
        secrets = {s["secretName"]: {e["envVar"] for e in s["keyToEnv"]} for s in spec["secretAsEnv"]}
        assert secrets["mlflow-client-credentials"] == {
            "MLFLOW_TRACKING_USERNAME",
            "MLFLOW_TRACKING_PASSWORD",
        }
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= secrets["pipeline-data-credentials"]
        assert spec["configMapAsEnv"][0]["keyToEnv"][0]["envVar"] == "MLFLOW_TRACKING_URI"
        # Telemetry off and the MLflow outage window in every pod, from the same ConfigMap (optional keys).
        optional = spec["configMapAsEnv"][1]
        assert {e["envVar"] for e in optional["keyToEnv"]} == {
            "MLFLOW_DISABLE_TELEMETRY",
            "DO_NOT_TRACK",
            "MELANOMA_MLFLOW_OUTAGE_WINDOW",
        }
        assert optional["optional"] is True
        assert spec["podMetadata"]["labels"]["melanoma-mlops/mlflow-client"] == "true"
    params = pipeline["root"]["inputDefinitions"]["parameters"]
    assert not [p for p in params if any(w in p.lower() for w in ("password", "secret", "token", "key"))]


def test_caching_is_off_everywhere_and_training_is_retried(gpu_spec) -> None:
    # Every step writes to its own pipeline run's MLflow parent: a cache hit would skip those
    # records (melanoma_pipelines.cluster explains the choice).
    pipeline, _ = gpu_spec
    tasks = pipeline["root"]["dag"]["tasks"]
    for step in TASK_ORDER:
        assert tasks[step].get("cachingOptions", {}).get("enableCache", False) is False, step
        retry = tasks[step].get("retryPolicy")
        if step in TRAINING_STEPS:
            assert (
                retry["maxRetryCount"] == 2
                and retry["backoffFactor"] == 2.0
                and retry["backoffDuration"] == "60s"
            )
        else:
            assert retry is None, step


def test_zero_gpus_compiles_a_cpu_pipeline(tmp_path: Path) -> None:
    pipeline, k8s = _compile(tmp_path, "--gpus", "0", "--node-selector", "pool=gpu")
    for step in GPU_STEPS:
        assert (
            "accelerator"
            not in pipeline["deploymentSpec"]["executors"][f"exec-{step}"]["container"]["resources"]
        )
        assert "nodeSelector" not in k8s[f"exec-{step}"]


def test_bad_cluster_options_are_explained() -> None:
    with pytest.raises(ConfigError, match="key=value:Effect"):
        Toleration.parse("nvidia.com/gpu")
    with pytest.raises(ConfigError, match="effect must be"):
        Toleration.parse("gpu:Sometimes")
    assert cli.main(["compile", "--gpus", "-1"]) == 2


def test_submit_dry_run_writes_the_package_and_the_arguments_it_would_submit(tmp_path: Path) -> None:
    out = tmp_path / "run.yaml"
    argv = ["submit", "--data", "s3://bucket/isic", "--dry-run", str(out), "--gpus", "1"]
    assert cli.main([*argv, "--stage2-lr", "3e-05", "--run-name", "lr2", "--image-size", "128"]) == 0
    pipeline = next(yaml.safe_load_all(out.read_text()))
    assert set(pipeline["root"]["dag"]["tasks"]) == set(TASK_ORDER)
    sent = json.loads((tmp_path / "run.arguments.json").read_text())
    assert sent["run_name"] == "lr2"
    args = sent["arguments"]
    assert args["data"] == "s3://bucket/isic" and args["run_name"] == "lr2"
    assert args["stage2_lr"] == 3e-05 and args["image_size"] == 128
    assert args["weights"] == "imagenet"  # every option is there, set or default
    assert set(args) == set(pipeline["root"]["inputDefinitions"]["parameters"])


def test_submit_to_an_unreachable_host_is_one_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["submit", "--host", "http://127.0.0.1:9", "--data", "s3://bucket/isic"])
    assert code == 2
    err = capsys.readouterr().err
    assert "could not submit to http://127.0.0.1:9" in err and "KFP_TOKEN" in err


def test_submit_needs_a_host_or_dry_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["submit", "--data", "s3://bucket/isic"]) == 2
    assert "--host is required" in capsys.readouterr().err
