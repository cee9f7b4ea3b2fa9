"""The compiled KFP IR: the eight tasks, chained in the protocol's order, in the chosen image."""

from __future__ import annotations

import itertools
from pathlib import Path

import yaml

from melanoma_pipelines import cli
from melanoma_pipelines.dag import TASK_ORDER


def _load(path: Path) -> dict:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs[0]


def test_compile_writes_every_task_in_dag_order(tmp_path: Path) -> None:
    out = tmp_path / "pipeline.yaml"
    assert cli.main(["compile", "--output", str(out), "--image", "registry.example/melanoma:1.2"]) == 0
    spec = _load(out)
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == set(TASK_ORDER)
    for before, after in itertools.pairwise(TASK_ORDER):
        assert before in tasks[after].get("dependentTasks", []), f"{after} does not wait for {before}"
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example/melanoma:1.2"}


def test_compiled_parameters_carry_the_config_defaults(tmp_path: Path) -> None:
    out = tmp_path / "pipeline.yaml"
    cli.main(["compile", "--output", str(out)])
    params = _load(out)["root"]["inputDefinitions"]["parameters"]
    assert params["stage2_lr"]["defaultValue"] == 1e-5
    assert params["weights"]["defaultValue"] == "imagenet"
    assert "defaultValue" not in params["data"]  # the data source is required
