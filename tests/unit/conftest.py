"""The unit tier's rule, enforced: a unit test starts no process.

Everything under tests/unit runs inside the pytest process: no subprocess (no ``python -c``, no CLI
in a process of its own, no kfp.local DAG, whose runner starts a process per step), no server
(MLflow, moto, Streamlit), no container, no browser. That is what keeps this tier fast enough to run
after every change (``make test-unit``; README "Development", docs/architecture.md "Tests").

While a unit test runs (its setup with its fixtures, the test, its teardown), every way Python has to
start a process is replaced by :func:`_refuse`: the test fails with :data:`MESSAGE`, even when the
code under test catches the exception. The only processes allowed are the few that libraries start
by themselves during ordinary in-process calls, listed in :data:`LIBRARY_PROCESSES`.
"""

from __future__ import annotations

import contextlib
import multiprocessing.process
import os
import subprocess
import sys
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

MESSAGE = "unit tests do not start processes: move this test to tests/integration"

#: Processes that libraries start by themselves for ordinary in-process calls: (the program, a file
#: that must be on the call stack). Nothing else is allowed, and neither of these starts anything a
#: test asked for.
LIBRARY_PROCESSES = (
    # MLflow tags every new run with the git commit, branch and remote of the entry point
    # (mlflow/tracking/context/git_context.py -> mlflow/utils/git_utils.py, through GitPython:
    # `git version` when it is imported, then `git check-ignore` and a `git cat-file --batch-check`
    # reader). Once per process, as MLflow caches the answer; no setting turns it off.
    ("git", "mlflow/utils/git_utils.py"),
    # platform.processor() runs `uname -p` once per process and caches the answer; MLflow's telemetry
    # schema asks for it when mlflow is first imported.
    ("uname", "/platform.py"),
)


class ProcessStartError(RuntimeError):
    """A unit test (or the code it drives) tried to start a process."""


_refused: list[str] = []


def _allowed(program: str | None) -> bool:
    if not program:
        return False
    name = os.path.basename(os.fsdecode(program))
    wanted = [marker for prog, marker in LIBRARY_PROCESSES if prog == name]
    frame = sys._getframe(2)
    while frame is not None and wanted:
        filename = frame.f_code.co_filename.replace(os.sep, "/")
        if any(filename.endswith(marker) for marker in wanted):
            return True
        frame = frame.f_back
    return False


def _refuse(what: str, original: Callable[..., Any], program: Callable[..., Any]) -> Callable[..., Any]:
    """``original`` unless it starts a process no library is allowed to start: then fail the test."""

    def guarded(*args: Any, **kwargs: Any) -> Any:
        started = program(*args, **kwargs)
        if _allowed(started):
            return original(*args, **kwargs)
        message = f"{MESSAGE} ({what}: {started or 'a new process'})"
        _refused.append(message)
        raise ProcessStartError(message)

    return guarded


def _popen_program(popen: subprocess.Popen, args: Any, executable: Any, *_: Any, **__: Any) -> str:
    if executable:
        return os.fsdecode(executable)
    if isinstance(args, (str, bytes, os.PathLike)):
        return os.fsdecode(args)
    return os.fsdecode(args[0]) if args else ""


def _first(path: Any = None, *_: Any, **__: Any) -> str | None:
    return os.fsdecode(path) if path is not None else None


def _none(*_: Any, **__: Any) -> None:
    return None


#: (owner, attribute, how the refusal names it, what it would run). subprocess.Popen's
#: _execute_child is where subprocess.run/call/check_output, os.popen and asyncio's subprocesses
#: all start their child; os.fork covers os.spawn*; multiprocessing covers its pools and executors.
_ENTRY_POINTS: tuple[tuple[Any, str, str, Callable[..., Any]], ...] = (
    (subprocess.Popen, "_execute_child", "subprocess", _popen_program),
    (os, "posix_spawn", "os.posix_spawn", _first),
    (os, "posix_spawnp", "os.posix_spawnp", _first),
    (os, "system", "os.system", _first),
    (os, "fork", "os.fork", _none),
    (os, "forkpty", "os.forkpty", _none),
    (multiprocessing.process.BaseProcess, "start", "multiprocessing", _none),
)


@contextlib.contextmanager
def _no_processes() -> Iterator[None]:
    saved = []
    for owner, name, what, program in _ENTRY_POINTS:
        if hasattr(owner, name):
            original = getattr(owner, name)
            saved.append((owner, name, original))
            setattr(owner, name, _refuse(what, original, program))
    try:
        yield
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


# The hooks below are path-scoped: pytest calls them for the tests under tests/unit only.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    with _no_processes():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    with _no_processes():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    with _no_processes():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A refusal the code under test caught (``except Exception``) still fails the test."""
    report = yield
    refused, _refused[:] = list(_refused), []
    if refused and report.passed:
        report.outcome = "failed"
        report.longrepr = "\n".join(dict.fromkeys(refused))
    return report
