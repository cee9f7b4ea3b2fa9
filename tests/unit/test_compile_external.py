"""The ``external-validation`` pipeline, compiled by docs/cluster.md's command as written: its inputs
are evaluate's (model, data, name, seed, the fields of the groups the step reads, not the
training-only ones), its one task runs the evaluate step's own function with evaluate's scoring
profile (GPU, resources, MLflow credentials), and its component reads every field of those groups."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import readme_blocks
import yaml

from melanoma_mlops import config
from melanoma_pipelines import cli
from melanoma_pipelines.cluster import DEFAULT_RESOURCES
from melanoma_pipelines.params import EXTERNAL_GROUPS, EXTERNAL_TRAINING_ONLY

IMAGE = "registry.example/pipeline:1.0"


def _documented_compile(output: Path) -> list[str]:
    """docs/cluster.md's compile command for the pipeline (argv), writing ``output`` in ``IMAGE``."""
    text = (readme_blocks.ROOT / "docs" / "cluster.md").read_text()
    body = readme_blocks.section(text, "External validation on the cluster")
    [command] = [c for _, code in readme_blocks.blocks(body) for c in readme_blocks.commands(code)]
    program, *argv = shlex.split(command.replace("$REGISTRY/pipeline:$VERSION", IMAGE))
    assert program == "melanoma-mlops" and "external-validation.yaml" in argv
    return [str(output) if a == "external-validation.yaml" else a for a in argv]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The package's two documents: the IR and its Kubernetes platform spec."""
    out = tmp_path_factory.mktemp("compile") / "external-validation.yaml"
    assert cli.main(_documented_compile(out)) == 0
    return [d for d in yaml.safe_load_all(out.read_text()) if d]


@pytest.fixture(scope="module")
def ir(compiled: list[dict[str, Any]]) -> dict[str, Any]:
    return compiled[0]


def test_its_inputs_are_evaluates(ir: dict[str, Any]) -> None:
    inputs = ir["root"]["inputDefinitions"]["parameters"]
    fields = {f for f in config.field_names(*EXTERNAL_GROUPS) if f not in EXTERNAL_TRAINING_ONLY}
    assert set(inputs) == {"model_uri", "data", "name", "seed", *fields}
    assert "defaultValue" not in inputs["data"] and "defaultValue" not in inputs["name"]
    assert inputs["model_uri"]["defaultValue"] == "models:/melanoma-resnet50@champion"
    assert (
        inputs["on_overlap"]["defaultValue"] == "exclude" and "copies" in inputs["on_overlap"]["description"]
    )


def test_one_task_runs_the_evaluate_step_with_the_scoring_profile(ir: dict[str, Any]) -> None:
    [(name, task)] = ir["root"]["dag"]["tasks"].items()
    assert name == "external-validation" and set(ir["components"]) == {"comp-external-validation"}
    component = ir["components"]["comp-external-validation"]
    assert set(config.field_names(*EXTERNAL_GROUPS)) <= set(component["inputDefinitions"]["parameters"])
    assert set(component["outputDefinitions"]["artifacts"]) == {"evaluation", "metrics"}
    assert set(task["inputs"]["parameters"]) == set(ir["root"]["inputDefinitions"]["parameters"])
    [executor] = ir["deploymentSpec"]["executors"].values()
    container = executor["container"]
    assert container["image"] == IMAGE
    assert "from melanoma_mlops.steps.external import external_step" in "\n".join(container["command"])
    resources = container["resources"]
    assert (
        resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
        and resources["accelerator"]["count"] == "1"
    )
    assert resources["cpuLimit"] == float(DEFAULT_RESOURCES["external_validation"][1])
    assert ir["pipelineInfo"]["name"] == "external-validation"


def test_the_pod_reaches_mlflow_and_the_data_like_every_step(compiled: list[dict[str, Any]]) -> None:
    spec = compiled[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-external-validation"]
    assert spec["podMetadata"]["labels"] == {"melanoma-mlops/mlflow-client": "true"}
    assert spec["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
    secrets = {s["secretName"] for s in spec["secretAsEnv"]}
    assert secrets == {"mlflow-client-credentials", "pipeline-data-credentials"}
    assert {c["configMapName"] for c in spec["configMapAsEnv"]} == {"mlflow-client-config"}
