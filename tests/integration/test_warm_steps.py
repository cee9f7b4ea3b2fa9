"""Local steps forked from a warm process do what kfp.local's own subprocess would.

The command shape the fork relies on is checked on every component of both DAGs; a small pipeline
under kfp.local then runs with the steps forked: outputs passed between steps, the environment and
working directory kfp.local gives a subprocess, each step's printed lines reaching kfp.local's
``print``, a failing step failing the run with its own message, and any other command shape left
to kfp.local. The whole DAG runs forked in tests/integration/test_pipeline_local.py (its outputs and MLflow
records are checked there, as before).
"""

# No `from __future__ import annotations`: KFP reads the components' annotations as types.

import os
from pathlib import Path

import pytest
from kfp import dsl, local
from kfp.local import subprocess_task_handler

from melanoma_pipelines import DEFAULT_IMAGE, warm_steps


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def produce(text: str, out: dsl.Output[dsl.Dataset]):
    import os
    import sys

    warm = "tensorflow" in sys.modules  # imported by the warm process, not by this component
    print(f"producing in pid {os.getpid()} (tensorflow already imported: {warm})")
    with open(out.path, "w") as fh:
        fh.write(text + "|" + os.environ.get("WARM_TEST_VALUE", "") + "|" + os.getcwd())


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def consume(data: dsl.Input[dsl.Dataset], fail: bool) -> str:
    with open(data.path) as fh:
        text = fh.read()
    if fail:
        raise SystemExit(3)
    return text


@dsl.pipeline(name="warm-test")
def two_steps(fail: bool) -> str:
    first = produce(text="hello")
    return consume(data=first.outputs["out"], fail=fail).output


@pytest.fixture
def warm_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WARM_TEST_VALUE", "from-the-driver")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    printed: list[str] = []
    monkeypatch.setattr("builtins.print", lambda *a, **k: printed.append(" ".join(map(str, a))))
    with warm_steps.installed() as warm:
        yield warm, tmp_path, printed


@pytest.mark.integration
def test_steps_run_forked_with_kfp_locals_environment_and_outputs(warm_run) -> None:
    warm, tmp_path, printed = warm_run
    task = two_steps(fail=False)
    assert task.output == f"hello|from-the-driver|{tmp_path}"
    assert warm.forked == 2  # both steps forked, none fell back to a new process
    lines = [line.strip() for line in printed if "producing in pid" in line]
    assert lines and lines[0].endswith("(tensorflow already imported: True)"), printed
    assert lines[0].split()[3] != str(os.getpid())


@pytest.mark.integration
def test_a_failing_forked_step_fails_the_run(warm_run) -> None:
    warm, _, _ = warm_run
    with pytest.raises(RuntimeError, match=r"FAILURE.*consume"):
        two_steps(fail=True)
    assert warm.forked == 2


@pytest.mark.integration
def test_kfp_locals_function_is_back_after_the_run() -> None:
    original = subprocess_task_handler.run_local_subprocess
    with warm_steps.installed() as warm:
        assert subprocess_task_handler.run_local_subprocess == warm.run
    assert subprocess_task_handler.run_local_subprocess is original
