"""The inference service's manifests (k8s/serving): both targets render, validate (the InferenceService
against KServe's vendored CRD schema), pass checkov, and `deploy` pins them to one registered version.

No cluster, no TensorFlow: the registry holds tag-only versions (tests/registry_light.py).
"""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import registry_light
import yaml
from mlflow.tracking import MlflowClient
from test_k8s import K8S, K8S_VERSION, require_tool
from test_k8s_checkov import assert_checkov_clean

from melanoma_pipelines import cli
from melanoma_pipelines.cli.deploy import TARGETS

SERVING = K8S / "serving"
SCHEMA = SERVING / "crd" / "inferenceservice-v1beta1.schema.json"
ISVC = ("serving.kserve.io/v1beta1", "InferenceService")


def kustomize(folder: Path) -> list[dict[str, Any]]:
    kubectl = require_tool("kubectl", hint="kubectl with its built-in kustomize renders the overlays")
    result = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {folder} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@cache
def rendered(target: str) -> tuple[dict[str, Any], ...]:
    return tuple(kustomize(SERVING / target))


def undeclared_fields(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the schema does not declare (the API server prunes them silently: a typo is lost)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found = []
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key not in schema["properties"]:
                found.append(f"{path}.{key}")
            else:
                found += undeclared_fields(item, schema["properties"][key], f"{path}.{key}")
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, item in value.items():
            found += undeclared_fields(item, schema["additionalProperties"], f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += undeclared_fields(item, schema["items"], f"{path}[{i}]")
    return found


@cache
def crd_validator() -> jsonschema.protocols.Validator:
    """The vendored schema's validator, built once (the schema is 0.6 MB)."""
    schema = json.loads(SCHEMA.read_text())
    # An OpenAPI v3 structural schema: JSON Schema draft 4 keywords, plus x-kubernetes-* extensions.
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def validate(obj: dict[str, Any]) -> None:
    """kubernetes-validate for built-in kinds, the vendored CRD schema for the InferenceService."""
    if (obj["apiVersion"], obj["kind"]) == ISVC:
        crd_validator().validate(obj)
        undeclared = undeclared_fields(obj, crd_validator().schema)
        assert not undeclared, f"fields the InferenceService schema does not declare: {undeclared}"
    else:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def server_container(obj: dict[str, Any]) -> dict[str, Any]:
    pod = obj["spec"]["predictor"] if obj["kind"] == "InferenceService" else obj["spec"]["template"]["spec"]
    return pod["containers"][0]


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_each_target_renders_and_validates(target):
    objects = rendered(target)
    kinds = {o["kind"] for o in objects}
    assert TARGETS[target][0] in kinds and "NetworkPolicy" in kinds
    for obj in objects:
        validate(obj)
        assert obj["metadata"]["namespace"] == "melanoma-mlops"


def test_the_schema_check_catches_a_misspelt_field():
    (isvc,) = [o for o in rendered("kserve") if o["kind"] == "InferenceService"]
    broken = json.loads(json.dumps(isvc))
    broken["spec"]["predictor"]["minReplica"] = 1
    with pytest.raises(AssertionError, match=r"\.spec\.predictor\.minReplica"):
        validate(broken)
    broken = json.loads(json.dumps(isvc))
    broken["spec"]["predictor"]["minReplicas"] = "one"
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


def test_both_targets_run_the_same_server_pod():
    (isvc,) = [o for o in rendered("kserve") if o["kind"] == "InferenceService"]
    (deployment,) = [o for o in rendered("plain") if o["kind"] == "Deployment"]
    a, b = server_container(isvc), server_container(deployment)
    assert {k: v for k, v in a.items() if k != "name"} == {k: v for k, v in b.items() if k != "name"}
    assert a["args"][:3] == ["serve", "--model-uri", "models:/melanoma-resnet50/REPLACE_ME"]
    for probe, path in (("startupProbe", "live"), ("readinessProbe", "ready"), ("livenessProbe", "live")):
        assert a[probe]["httpGet"]["path"] == f"/v2/health/{path}"
    assert a["resources"]["limits"]["memory"] and a["resources"]["requests"]["cpu"]
    assert isvc["spec"]["predictor"]["minReplicas"] <= isvc["spec"]["predictor"]["maxReplicas"]
    # KServe v0.20 (the vendored schema) names the mode without Knative "Standard" ("RawDeployment"
    # is deprecated); a CRD schema cannot check an annotation's value.
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"


#: Predictor fields that are KServe's, not a PodSpec's.
KSERVE_ONLY = {"minReplicas", "maxReplicas", "scaleMetric", "scaleTarget", "labels", "annotations"}


def as_checkov_sees_it(obj: dict[str, Any]) -> dict[str, Any]:
    """checkov scans no InferenceService (it reports 0 resources): its predictor, which KServe turns
    into the pod, is scanned as the Pod it becomes, with the InferenceService's metadata."""
    if obj["kind"] != "InferenceService":
        return obj
    pod = {k: v for k, v in obj["spec"]["predictor"].items() if k not in KSERVE_ONLY}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": obj["metadata"], "spec": pod}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_checkov_finds_no_failed_check(target, tmp_path):
    objects = [as_checkov_sees_it(o) for o in rendered(target)]
    assert_checkov_clean(objects, tmp_path / f"{target}.yaml", min_resources=2)


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> str:
    """One store for the deploy tests (its migrations cost seconds): melanoma-resnet50 versions 1-3,
    @champion on 2; model `no-champion` with one version and no alias."""
    root = tmp_path_factory.mktemp("deploy-registry")
    uri = registry_light.store_uri(root)
    client = MlflowClient(uri)
    registry_light.make_model(client, root, "melanoma-resnet50", versions=3)
    client.set_registered_model_alias("melanoma-resnet50", "champion", "2")
    registry_light.make_model(client, root, "no-champion", versions=1)
    return uri


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_deploy_renders_an_overlay_pinned_to_the_aliased_version(target, registry, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry)
    client = MlflowClient(registry)
    out = tmp_path / "deploy"
    argv = ["deploy", "--alias", "champion", "--render", str(out), "--target", target, "--k8s-dir", str(K8S)]
    assert cli.main(argv) == 0
    objects = kustomize(out)
    (main,) = [o for o in objects if o["kind"] == TARGETS[target][0]]
    assert server_container(main)["args"][2] == "models:/melanoma-resnet50/2"
    notes = main["metadata"]["annotations"]
    assert notes["melanoma-mlops/model-version"] == "2"
    assert notes["melanoma-mlops/model-artifact-uri"] == client.get_model_version_download_uri(
        "melanoma-resnet50", "2"
    )
    assert "@champion (version 2" in notes["melanoma-mlops/deployed-from"]
    # The prediction log's location comes along (k8s/prediction-log, tests/k8s/test_k8s_prediction_log.py).
    (config,) = [
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "prediction-log-config"
    ]
    env = {v["name"]: v for v in server_container(main)["env"]}
    assert (
        env["MELANOMA_PREDICTION_LOG"]["valueFrom"]["configMapKeyRef"]["name"] == config["metadata"]["name"]
    )
    for obj in objects:
        validate(obj)
    # The alias moving later changes nothing already rendered: the version is written down.
    client.set_registered_model_alias("melanoma-resnet50", "champion", "3")
    try:
        (again,) = [o for o in kustomize(out) if o["kind"] == TARGETS[target][0]]
    finally:
        client.set_registered_model_alias("melanoma-resnet50", "champion", "2")
    assert server_container(again)["args"][2] == "models:/melanoma-resnet50/2"


def test_deploy_refuses_what_it_cannot_pin(registry, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry)
    base = ["deploy", "--render", str(tmp_path / "out"), "--k8s-dir", str(K8S)]
    cases = [
        (["--model-name", "no-champion"], "no-champion has no @champion"),
        (["--version", "7"], "has no version '7'"),
        (["--version", "1", "--k8s-dir", str(tmp_path)], "has no kustomization.yaml"),
    ]
    for extra, words in cases:
        assert cli.main([*base, *extra]) != 0
        err = capsys.readouterr().err
        assert err.startswith("error: ") and words in err, err
    (tmp_path / "file").write_text("")
    assert (
        cli.main(["deploy", "--version", "1", "--render", str(tmp_path / "file"), "--k8s-dir", str(K8S)]) != 0
    )
    assert "is not a folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
