"""The command shape the warm-process runner replays (melanoma_pipelines/warm_steps.py), checked on
every component of the main DAG: kfp.local's ``sh -ec SCRIPT SOURCE ARGS...`` with the executor; any
other shape (a pip install, another program) is left to kfp.local's own subprocess."""

from __future__ import annotations

import pytest
from kfp.local import subprocess_task_handler

from melanoma_mlops.errors import MelanomaError
from melanoma_pipelines import DEFAULT_IMAGE, cli, local, warm_steps
from melanoma_pipelines.components import build_components


def test_every_component_has_the_command_shape_the_fork_replays() -> None:
    comps = build_components(DEFAULT_IMAGE)
    for name, comp in vars(comps).items():
        container = comp.component_spec.implementation.container
        command = [*container.command, *container.args]
        parsed = warm_steps.StepCommand.parse(command)
        assert parsed is not None, name
        assert f"def {name}(" in parsed.source
        assert "--function_to_execute" in parsed.args


def test_other_commands_are_not_replayed() -> None:
    assert warm_steps.StepCommand.parse(["python", "-c", "print(1)"]) is None
    pip = ["sh", "-c", 'pip install x && "$0" "$@"', "sh", "-ec", "..."]
    assert warm_steps.StepCommand.parse(pip) is None


def test_disabled_leaves_kfp_locals_function_in_place() -> None:
    original = subprocess_task_handler.run_local_subprocess
    with warm_steps.installed(enabled=False) as warm:
        assert warm is None and subprocess_task_handler.run_local_subprocess is original


@pytest.mark.parametrize(("runner", "warm"), [([], True), (["--runner", "subprocess"], False)])
def test_the_cli_forks_steps_unless_asked_for_subprocesses(
    monkeypatch, runner: list[str], warm: bool
) -> None:
    seen: dict = {}

    def run_local(*args, **kwargs):
        seen.update(kwargs)
        raise MelanomaError("stop here")

    monkeypatch.setattr(local, "run_local", run_local)
    assert cli.main(["run", "--resume", "some-run", *runner]) != 0
    assert seen["warm"] is warm and seen["docker"] is None
