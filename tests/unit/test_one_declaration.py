"""A setting is declared once, in config.py, and reaches every stop with no other edit.

The fixture adds a field to the training group the way a developer would (a dataclass field with
its help and range) and the tests find it at each stop a value travels through: the CLI option,
the pipeline parameter the KFP UI shows (both DAGs), the input of every component that reads the
group, the wiring from one to the other, the group object the step function receives, and the
parent run's params (and back, for ``--resume``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from melanoma_mlops import config

NEW = "warmup_epochs"
NEW_EXTERNAL = "probe_images"


def _extend(mp: pytest.MonkeyPatch, group: str, name: str, default: int, help_: str, hi: int) -> type:
    """The config group ``group`` with one more int field, installed where config.py declares it."""
    base = config.GROUPS[group]
    metadata = {"help": help_, "lo": 0, "hi": hi}
    extended = dataclasses.make_dataclass(
        base.__name__,
        [(name, int, dataclasses.field(default=default, metadata=metadata))],
        bases=(base,),
        frozen=True,
    )
    mp.setattr(config, base.__name__, extended)
    mp.setitem(config.GROUPS, group, extended)
    return extended


@pytest.fixture
def new_training_field(monkeypatch: pytest.MonkeyPatch) -> type:
    """TrainingConfig with one more field."""
    return _extend(monkeypatch, "training", NEW, 2, "epochs of LR warm-up", 50)


@pytest.fixture
def new_external_field(monkeypatch: pytest.MonkeyPatch) -> type:
    """ExternalConfig with one more field: the group only external validation reads."""
    return _extend(monkeypatch, "external", NEW_EXTERNAL, 3, "planted probes", 9)


def _ir(tmp_path: Path, pipeline: str) -> dict[str, Any]:
    from melanoma_pipelines.compile import compile_pipeline

    out = compile_pipeline(tmp_path / f"{pipeline}.yaml", pipeline=pipeline)
    return next(d for d in yaml.safe_load_all(out.read_text()) if d)


def test_the_cli_offers_it(new_training_field: type) -> None:
    from melanoma_pipelines.cli import build_parser
    from melanoma_pipelines.cli.options import config_from_args

    parser = build_parser(["run"])
    assert "LR warm-up" in parser._subparsers._group_actions[0].choices["run"].format_help()
    args = parser.parse_args(["run", "--warmup-epochs", "5"])
    assert config_from_args(args).training.warmup_epochs == 5


@pytest.mark.parametrize("pipeline", ["two-stage", "ablation"])
def test_the_kfp_ui_shows_it_and_every_component_of_the_group_receives_it(
    new_training_field: type, tmp_path: Path, pipeline: str
) -> None:
    ir = _ir(tmp_path, pipeline)
    assert ir["root"]["inputDefinitions"]["parameters"][NEW]["description"] == "epochs of LR warm-up"
    readers = {"stage1", "stage2", "evaluate"} | (
        {"gradcam", "promote"} if pipeline == "two-stage" else {"single-stage", "start-ablation"}
    )
    for name in readers:
        assert NEW in ir["components"][f"comp-{name}"]["inputDefinitions"]["parameters"], name
    dags = [ir["root"]["dag"], *(c["dag"] for c in ir["components"].values() if "dag" in c)]
    wired = {
        task["componentRef"]["name"].removeprefix("comp-").rsplit("-", 1)[0]
        if task["componentRef"]["name"][-1].isdigit()
        else task["componentRef"]["name"].removeprefix("comp-")
        for dag in dags
        for task in dag["tasks"].values()
        if task.get("inputs", {}).get("parameters", {}).get(NEW, {}).get("componentInputParameter", "")
        in (NEW, f"pipelinechannel--{NEW}")
    }
    assert readers <= wired, readers - wired


def test_the_step_receives_it_in_its_group(
    new_training_field: type, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from melanoma_pipelines import runtime
    from melanoma_pipelines.components import build_components

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(runtime, "run_step", lambda name, fn, *a, **kw: calls.append(kw))
    stage1 = build_components("image").stage1.python_func
    path = SimpleNamespace(path=str(tmp_path / "x"))
    stage1(parent_run_id="p", train=path, val=path, seed=1, model=path, warmup_epochs=7)
    cfg = calls[0]["cfg"]
    assert isinstance(cfg, new_training_field) and cfg.warmup_epochs == 7


def test_the_external_validation_pipeline_offers_it_and_its_step_receives_it(
    new_external_field: type, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from melanoma_pipelines import components, runtime
    from melanoma_pipelines.params import config_component

    ir = _ir(tmp_path, "external-validation")
    assert ir["root"]["inputDefinitions"]["parameters"][NEW_EXTERNAL]["description"] == "planted probes"
    task = ir["root"]["dag"]["tasks"]["external-validation"]
    assert task["inputs"]["parameters"][NEW_EXTERNAL]["componentInputParameter"] == NEW_EXTERNAL
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(
        runtime, "run_step", lambda name, fn, *a, **kw: calls.append((a, kw)) or {"run_id": "r"}
    )
    monkeypatch.setattr(runtime, "write_external_metrics", lambda result, metrics: None)
    component = config_component(components.external_validation)  # what the component's pod runs
    out = SimpleNamespace(path=str(tmp_path / "x"))
    run_id = component(
        model_uri="models:/m/1", data="d", name="n", seed=1, evaluation=out, metrics=out, probe_images=7
    )
    [(args, kw)] = calls
    assert run_id == "r" and args == ("models:/m/1", "d", "n", out.path)
    assert isinstance(kw["cfg"], new_external_field) and kw["cfg"].probe_images == 7


def test_the_parent_run_records_it_and_resume_reads_it_back(
    new_training_field: type, mlflow_store: str, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    from melanoma_pipelines import parent_run

    run_config = config.RunConfig.from_params({NEW: 9})
    run_id = parent_run.create_parent("t", run_config, str(tmp_path), tmp_path)
    run = MlflowClient().get_run(run_id)
    assert run.data.params[NEW] == "9"
    assert parent_run.config_of(run)[0].training.warmup_epochs == 9


def test_stage2_lr_is_written_by_hand_in_few_places() -> None:
    """The measure of the issue: outside config.py and the model code, at most two mentions."""
    root = Path(__file__).resolve().parents[2]
    mentions = [
        f"{path.relative_to(root)}:{n}"
        for top in ("components", "pipelines", "app")
        for path in (root / top).rglob("*.py")
        if path.name != "config.py" and "model" not in path.relative_to(root).parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "stage2_lr" in line
    ]
    assert len(mentions) <= 2, mentions


def test_the_data_fingerprint_tag_is_named_once() -> None:
    """The run tag's wire name lives in artifacts.py (FINGERPRINT_TAG); code names the constant."""
    from melanoma_mlops.artifacts import FINGERPRINT_TAG

    root = Path(__file__).resolve().parents[2]
    wire = FINGERPRINT_TAG
    mentions = [
        f"{path.relative_to(root)}:{n}"
        for top in ("components", "pipelines", "app")
        for path in sorted((root / top).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if f'"{wire}"' in line or f"'{wire}'" in line
    ]
    assert [m.rsplit(":", 1)[0] for m in mentions] == ["components/melanoma_mlops/artifacts.py"], mentions
