"""Every configuration field a DAG reads is a pipeline input and reaches a step's input.

Walks the compiled IR of every DAG: a field that is declared but never wired would be silently
ignored on a cluster (the pipeline would accept the option and train with the default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from melanoma_mlops import config
from melanoma_pipelines.compile import compile_pipeline
from melanoma_pipelines.params import ABLATION_GROUPS, EXTERNAL_GROUPS, EXTERNAL_TRAINING_ONLY, MAIN_GROUPS


def _ir(tmp_path: Path, pipeline: str) -> dict[str, Any]:
    out = compile_pipeline(tmp_path / f"{pipeline}.yaml", pipeline=pipeline)
    return next(d for d in yaml.safe_load_all(out.read_text()) if d)


def _step_inputs(ir: dict[str, Any]) -> set[str]:
    """Pipeline parameters bound to an input of a task that runs a container (at any depth)."""
    components = ir["components"]
    dags = [ir["root"]["dag"], *(c["dag"] for c in components.values() if "dag" in c)]
    found: set[str] = set()
    for dag in dags:
        for task in dag["tasks"].values():
            if "executorLabel" not in components[task["componentRef"]["name"]]:
                continue  # a sub-DAG (loop, condition): its own tasks are walked separately
            for binding in task.get("inputs", {}).get("parameters", {}).values():
                name = binding.get("componentInputParameter", "")
                found.add(name.removeprefix("pipelinechannel--"))
    return found


@pytest.mark.parametrize(
    ("pipeline", "fields"),
    [
        ("two-stage", ["seed", *config.field_names(*MAIN_GROUPS)]),
        ("ablation", config.field_names(*ABLATION_GROUPS)),
        (
            "external-validation",
            ["seed", *(f for f in config.field_names(*EXTERNAL_GROUPS) if f not in EXTERNAL_TRAINING_ONLY)],
        ),
    ],
)
def test_every_config_field_is_an_input_that_reaches_a_step(
    tmp_path: Path, pipeline: str, fields: list[str]
) -> None:
    ir = _ir(tmp_path, pipeline)
    inputs = ir["root"]["inputDefinitions"]["parameters"]
    reached = _step_inputs(ir)
    for name in fields:
        assert name in inputs, f"{pipeline}: {name} is not a pipeline input"
        assert name in reached, f"{pipeline}: {name} reaches no step"


def test_the_pipeline_inputs_describe_themselves(tmp_path: Path) -> None:
    inputs = _ir(tmp_path, "two-stage")["root"]["inputDefinitions"]["parameters"]
    assert "Stage 2" in inputs["stage2_lr"]["description"]
