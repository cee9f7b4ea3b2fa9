"""Local steps forked from a warm process do what kfp.local's own subprocess would.

A two-step pipeline under kfp.local with the steps forked: outputs passed between steps, the
environment, working directory and ``sys.argv[0]`` (MLflow's ``mlflow.source.name``) a subprocess
would have, the run's process group (a kill of the group ends the steps), each step's lines reaching
kfp.local's ``print``; a failing step prints what it prints as a subprocess and fails the run the
same way; when the warm process cannot start, kfp.local's subprocess runs every step. The whole DAG
runs forked in the session's tiny run (tests/tiny_run.py; tests/integration/test_pipeline_local.py
checks its outputs and MLflow records). The command shape is checked in tests/unit/test_warm_steps.py.
"""

# No `from __future__ import annotations`: KFP reads the components' annotations as types.

import logging
import multiprocessing.forkserver
import os
import re
from pathlib import Path

import kfp.dsl.executor_main
import pytest
from kfp import dsl, local
from kfp.local import subprocess_task_handler

from melanoma_pipelines import DEFAULT_IMAGE, warm_steps

pytestmark = pytest.mark.integration


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def produce(text: str, out: dsl.Output[dsl.Dataset]):
    import os
    import sys

    warm = "tensorflow" in sys.modules  # imported by the warm process, not by this component
    print(f"producing in pid {os.getpid()} group {os.getpgid(0)} (tensorflow already imported: {warm})")
    with open(out.path, "w") as fh:
        fh.write("|".join([text, os.environ.get("WARM_TEST_VALUE", ""), os.getcwd(), sys.argv[0]]))


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def consume(data: dsl.Input[dsl.Dataset], fail: bool) -> str:
    with open(data.path) as fh:
        text = fh.read()
    if fail:
        print("about to fail")
        raise ValueError(f"the step's own message, after reading {len(text)} characters")
    return text


@dsl.pipeline(name="warm-test")
def two_steps(fail: bool) -> str:
    first = produce(text="hello")
    return consume(data=first.outputs["out"], fail=fail).output


@pytest.fixture(scope="module")
def warm():
    """One warm process for the module (it imports TensorFlow and MLflow: ~10 s)."""
    with warm_steps.installed() as steps:
        yield steps


@pytest.fixture
def printed(warm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WARM_TEST_VALUE", "from-the-driver")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    lines: list[str] = []
    monkeypatch.setattr("builtins.print", lambda *a, **k: lines.append(" ".join(map(str, a))))
    return lines


def test_steps_run_forked_with_a_subprocess_environment_and_outputs(warm, printed, tmp_path: Path) -> None:
    before = warm.forked
    task = two_steps(fail=False)
    executor = kfp.dsl.executor_main.__file__  # `python -m`'s argv[0]: MLflow's mlflow.source.name
    assert task.output == f"hello|from-the-driver|{tmp_path}|{executor}"
    assert warm.forked == before + 2  # both steps forked, none fell back to a new process
    line = next(line.strip() for line in printed if "producing in pid" in line)
    assert line.endswith("(tensorflow already imported: True)"), printed
    pid, group = int(line.split()[3]), int(line.split()[5])
    assert pid != os.getpid() and group == os.getpgid(0)  # killing the run's group kills the step


def _failing_step_lines(printed: list[str]) -> list[str]:
    """The failing step's output, its temporary module path and the launcher's frames set aside
    (``<frozen runpy>`` in a subprocess)."""
    start = next(i for i, line in enumerate(printed) if "about to fail" in line)
    text = "".join(printed[start:])
    text = re.sub(r"/[^\s\"]*/ephemeral_component\.py", "<module>/ephemeral_component.py", text)
    return [line for line in text.splitlines() if "<frozen runpy>" not in line]


def test_a_failing_step_prints_and_fails_as_in_a_subprocess(warm, printed, monkeypatch) -> None:
    before = warm.forked
    with pytest.raises(RuntimeError, match=r"FAILURE.*consume") as forked_failure:
        two_steps(fail=True)
    assert warm.forked == before + 2
    forked = _failing_step_lines(printed)
    printed.clear()
    monkeypatch.setattr(subprocess_task_handler, "run_local_subprocess", warm.fallback)
    with pytest.raises(RuntimeError, match=r"FAILURE.*consume") as subprocess_failure:
        two_steps(fail=True)
    assert warm.forked == before + 2
    assert forked == _failing_step_lines(printed)
    assert "ValueError: the step's own message, after reading" in "\n".join(forked)
    assert str(forked_failure.value) == str(subprocess_failure.value)


def test_without_the_warm_process_kfp_locals_subprocess_runs_the_steps(warm, printed, monkeypatch) -> None:
    def refuse() -> None:
        raise OSError("no forkserver here")

    monkeypatch.setattr(multiprocessing.forkserver, "ensure_running", refuse)
    cold = warm_steps.WarmSteps(warm.fallback)
    cold.start()
    assert not cold.available
    monkeypatch.setattr(subprocess_task_handler, "run_local_subprocess", cold.run)
    assert two_steps(fail=False).output.startswith("hello|from-the-driver|")
    assert cold.forked == 0
    assert any(line.strip().endswith("(tensorflow already imported: False)") for line in printed)


def test_steps_fork_whatever_the_driver_runs_as_main(warm, printed, tmp_path: Path, monkeypatch) -> None:
    """A test session that ran the Streamlit app in process had ``app/app.py`` as ``__main__``, which
    multiprocessing re-runs in every child it prepares: each forked step died before it began."""
    import sys
    import types

    script = tmp_path / "not_a_guarded_script.py"
    script.write_text("raise RuntimeError('a __main__ that must not run again in a step')\n")
    main = types.ModuleType("__main__")
    main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", main)
    before = warm.forked
    assert two_steps(fail=False).output.startswith("hello|from-the-driver|")
    assert warm.forked == before + 2 and warm.available  # forked, none fell back
    assert sys.modules["__main__"] is main


class _DiesOnArrival:
    """A step command that ends the fork while it is unpickled, before the step's output is its
    own: what a fork that never reaches the executor looks like from the driver."""

    def __reduce__(self):
        last_words = "import os, sys; sys.stderr.write('died on arrival\\n'); sys.stderr.flush(); os._exit(3)"
        return (exec, (last_words,))


def test_a_fork_that_dies_before_the_step_falls_back_and_says_why(warm, printed, monkeypatch) -> None:
    monkeypatch.setattr(warm_steps.StepCommand, "parse", classmethod(lambda cls, command: _DiesOnArrival()))
    context = warm.context
    warned: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: warned.append(record.getMessage())  # kfp.local resets the root's handlers
    logging.getLogger(warm_steps.__name__).addHandler(handler)
    try:
        assert two_steps(fail=False).output.startswith("hello|from-the-driver|")
        assert not warm.available  # the rest of this run's steps went to kfp.local's subprocess
    finally:
        warm.context = context
        logging.getLogger(warm_steps.__name__).removeHandler(handler)
    assert "died before it started (exit 3; its last line: died on arrival)" in " ".join(warned)
    assert any(line.strip().endswith("(tensorflow already imported: False)") for line in printed)


def test_kfp_locals_function_is_back_after_the_run() -> None:
    original = subprocess_task_handler.run_local_subprocess
    with warm_steps.installed(enabled=False) as steps:
        assert steps is None
    with warm_steps.installed() as steps:
        assert subprocess_task_handler.run_local_subprocess == steps.run
    assert subprocess_task_handler.run_local_subprocess is original
