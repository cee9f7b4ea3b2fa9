"""Local steps forked from a warm process: TensorFlow, MLflow and the steps imported once per run.

``kfp.local.SubprocessRunner`` starts every step as a new ``python -m kfp.dsl.executor_main``
process: it imports kfp, MLflow and its SQLite store, pandas, Great Expectations or TensorFlow and
Keras, runs the step for seconds, and exits. On the default demo those imports (and the exits) were
most of the orchestration overhead (benchmarks/README.md, ``bench_dag.py``). Here one process imports
all of that once (Python's ``multiprocessing`` forkserver with those modules preloaded) and each
step is a *fork* of it that does exactly what kfp.local's command would: the environment kfp.local
would give the subprocess, the same working directory, the component's source written to
``ephemeral_component.py``, ``kfp.dsl.executor_main`` with the same arguments, its output streamed
line by line to kfp.local's ``print`` (so the console and the step logs see the same lines), its
exit status kfp.local's verdict. The DAG, the components and what the steps write (outputs, MLflow
records) are unchanged; a cluster runs the same components in pods.

Nothing is shared between steps but imported code: the warm process never runs TensorFlow, opens no
store and starts no thread of its own before it forks, and each step is a process of its own (its
own pid for heartbeats, killed with the run's process group). Any command of another shape (a
container component, a pip install) goes to kfp.local's own subprocess, as does every step when the
warm process cannot start (``--runner subprocess`` asks for that outright).

kfp.local has no public hook for how a subprocess is started: this replaces
``kfp.local.subprocess_task_handler.run_local_subprocess`` for the duration of a run
(:func:`installed`); tests/unit/test_warm_steps.py checks the command shape it relies on, and
tests/integration/test_warm_steps_forked.py that a forked step behaves as the subprocess would.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing as mp
import os
import runpy
import shutil
import signal
import sys
import tempfile
import threading
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection

logger = logging.getLogger(__name__)

#: What the warm process imports: the project package first (it sets TensorFlow's and MLflow's
#: environment defaults), then everything a step imports at its top.
PRELOAD = (
    "melanoma_mlops",
    "numpy",
    "pandas",
    "tensorflow",
    "keras",
    "mlflow",
    "kfp.dsl.executor",  # not executor_main: each step runs that module as __main__, as `python -m` does
    "kfp.dsl.kfp_config",
    "melanoma_pipelines.runtime",
    "melanoma_mlops.steps.validate",
    "melanoma_mlops.steps.split",
    "melanoma_mlops.steps.oversample",
    "melanoma_mlops.steps.train",
    "melanoma_mlops.steps.evaluate",
    "melanoma_mlops.steps.gradcam",
    "melanoma_mlops.steps.register",
    "melanoma_mlops.steps.promote",
    "melanoma_mlops.steps.ablation",
)
MODULE_FILE = "ephemeral_component.py"
EXECUTOR = "kfp.dsl.executor_main"


@dataclass(frozen=True)
class StepCommand:
    """A lightweight component's kfp.local command: ``sh -ec SCRIPT SOURCE ARGS...`` where SCRIPT
    writes SOURCE to ``$program_path/ephemeral_component.py`` and runs the executor on it."""

    source: str
    args: tuple[str, ...]

    @classmethod
    def parse(cls, command: list[str]) -> StepCommand | None:
        """The command's parts, or None when it is not exactly that shape."""
        if len(command) < 4 or command[0] != "sh" or command[1] not in ("-c", "-ec"):
            return None
        script = command[2]
        expected = (MODULE_FILE, f"-m {EXECUTOR}", "_KFP_RUNTIME=true", '"$@"')
        if not all(part in script for part in expected) or "pip" in script:
            return None
        return cls(source=command[3], args=tuple(command[4:]))


def _exit_code(exc: SystemExit) -> int:
    """The exit status Python gives ``raise SystemExit(code)`` (a message is printed, status 1)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)  # noqa: T201 - what Python prints for SystemExit("message")
    return 1


def _report_uncaught(exc: BaseException) -> None:
    """The traceback Python prints for an uncaught exception, without this module's and runpy's
    frames: from the executor's module down, as in the subprocess (whose first frames are
    ``<frozen runpy>``'s)."""
    tb = exc.__traceback__
    while tb is not None and (tb.tb_frame.f_code.co_filename in (__file__, runpy.__file__)
                              or tb.tb_frame.f_code.co_filename.endswith("runpy>")):  # fmt: skip
        tb = tb.tb_next
    sys.excepthook(type(exc), exc.with_traceback(tb), tb)  # Python prints __traceback__


def _fresh_process_state(env: dict[str, str], cwd: str) -> None:
    """What a new process would have and a fork of the warm one does not: the step's environment
    (not the one the warm process started with), its working directory, a temporary folder read
    from that environment, NumPy's global generator seeded from the OS (``random`` reseeds itself
    after a fork)."""
    os.environ.clear()
    os.environ.update({**env, "_KFP_RUNTIME": "true"})
    os.chdir(cwd)
    tempfile.tempdir = None
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def _step(command: StepCommand, env: dict[str, str], cwd: str, out: Connection) -> None:
    """The forked step: kfp.local's shell line, in Python (runs in the child, never returns).

    ``python3 -m kfp.dsl.executor_main --component_module_path FILE ARGS`` is
    ``runpy.run_module(..., alter_sys=True)``: the same ``__main__`` and ``sys.argv[0]`` (the
    executor's path, which MLflow records as the run's ``mlflow.source.name``)."""
    os.dup2(out.fileno(), 1)
    os.dup2(out.fileno(), 2)
    out.close()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    _fresh_process_state(env, cwd)
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, MODULE_FILE)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(command.source)
    sys.argv = [EXECUTOR, "--component_module_path", path, *command.args]
    code = 1
    try:
        runpy.run_module(EXECUTOR, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException as exc:  # noqa: BLE001 - as an uncaught exception ends a Python process
        _report_uncaught(exc)
    finally:
        # What a Python process does on its way out: wait for its threads, run its exit handlers.
        with contextlib.suppress(Exception):
            threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
        shutil.rmtree(folder, ignore_errors=True)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
    os._exit(code)


@contextlib.contextmanager
def _std_streams_to(path: str) -> Iterator[None]:
    """File descriptors 1 and 2 on ``path`` for a process started in this block (it inherits them):
    the warm process's import banners are not the run's output, and a fork's last words before it
    reaches :func:`_step` (which moves them to the step's pipe) are read back from there."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.dup2(log, 1)
        os.dup2(log, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, log):
            os.close(fd)


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """No ``__main__`` for the fork to re-run while a step process starts.

    multiprocessing prepares every child of a forkserver by running the parent's ``__main__`` again
    as ``__mp_main__`` (``spawn.prepare``), so that a target defined there can be found. A step's
    target is :func:`_step`, so that is never needed, and it is harmful where ``__main__`` is not a
    script that guards itself: in a test session that ran the Streamlit app in process,
    ``__main__`` was ``app/app.py``, and every forked step died re-running it before the step began.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def _last_line(path: str) -> str:
    """The last non-empty line of the warm process's own output (its children's early errors)."""
    with contextlib.suppress(OSError), open(path, encoding="utf-8", errors="replace") as fh:
        lines = [line.strip() for line in fh if line.strip()]
        return lines[-1] if lines else ""
    return ""


class WarmSteps:
    """Runs kfp.local's step commands as forks of a warm process (one per run: :func:`installed`)."""

    def __init__(self, fallback: Callable[..., int]) -> None:
        self.fallback = fallback
        self.context: mp.context.BaseContext | None = None
        self.forked = 0
        self.log = ""

    @property
    def available(self) -> bool:
        return self.context is not None

    def start(self) -> None:
        """Start the warm process now (it imports while the run sets up); fall back on failure."""
        try:
            from multiprocessing import forkserver

            context = mp.get_context("forkserver")  # ValueError where there is none (Windows)
            context.set_forkserver_preload(list(PRELOAD))
            fd, self.log = tempfile.mkstemp(prefix="warm-steps-", suffix=".log")
            os.close(fd)
            with _std_streams_to(self.log):
                forkserver.ensure_running()
        except (OSError, ValueError, RuntimeError) as exc:
            self._give_up(f"the warm step process could not start ({exc})")
            self._remove_log()
            return
        self.context = context

    def _give_up(self, why: str) -> None:
        logger.warning("%s: each step runs in a new Python process (kfp.local's own runner)", why)
        self.context = None

    def _remove_log(self) -> None:
        if self.log:
            with contextlib.suppress(OSError):
                os.remove(self.log)
            self.log = ""

    def stop(self) -> None:
        from multiprocessing import forkserver

        self._remove_log()
        server = getattr(forkserver, "_forkserver", None)
        if server is None or not hasattr(server, "_stop"):
            return
        pid = getattr(server, "_forkserver_pid", None)
        with contextlib.suppress(OSError, ChildProcessError):
            if pid:  # now, even mid-import (it would only notice the closed pipe after its imports)
                os.kill(pid, signal.SIGTERM)
            server._stop()

    def run(self, full_command: list[str], env_vars: dict[str, str] | None = None) -> int:
        """kfp.local's ``run_local_subprocess``: stream the step's output through ``print``, return
        its exit status (negative: the signal that ended it, as ``subprocess`` reports it)."""
        command = StepCommand.parse(full_command) if self.context is not None else None
        if command is None or self.context is None:
            return self.fallback(full_command=full_command, env_vars=env_vars)
        read_fd, write_fd = os.pipe()
        writer = Connection(write_fd, readable=False)
        process = self.context.Process(
            target=_step, args=(command, {**os.environ, **(env_vars or {})}, os.getcwd(), writer)
        )
        try:
            with _main_module_hidden():
                process.start()  # waits for the warm process to finish its imports the first time
        except (OSError, EOFError, RuntimeError) as exc:
            writer.close()
            os.close(read_fd)
            self._give_up(f"no step could be forked from the warm process ({exc})")
            return self.fallback(full_command=full_command, env_vars=env_vars)
        writer.close()
        self.forked += 1
        printed = False
        try:
            with open(read_fd, encoding="utf-8", errors="replace") as lines:
                for line in lines:
                    printed = True
                    print(line, end="")  # noqa: T201 - kfp.local streams a step through print
            process.join()
        except BaseException:
            process.terminate()  # SIGTERM: the step marks its MLflow runs KILLED
            process.join(timeout=30)
            raise
        code = process.exitcode if process.exitcode is not None else 1
        if code != 0 and not printed:
            # A step always prints (the executor's first log line): a fork that failed silently
            # never reached it, so nothing of the step ran. Run it the ordinary way, and the rest
            # of this run's steps too.
            last = _last_line(self.log) if self.log else ""
            self._give_up(
                f"a step forked from the warm process died before it started (exit {code}"
                + (f"; its last line: {last}" if last else "")
                + ")"
            )
            return self.fallback(full_command=full_command, env_vars=env_vars)
        print("\n")  # noqa: T201 - kfp.local's separator after a step's output
        return code


@contextlib.contextmanager
def installed(enabled: bool = True) -> Iterator[WarmSteps | None]:
    """Within this block kfp.local's subprocess steps are forks of a warm process (when ``enabled``)."""
    from kfp.local import subprocess_task_handler as handler

    original = getattr(handler, "run_local_subprocess", None)
    if not enabled or original is None:
        yield None
        return
    warm = WarmSteps(original)
    warm.start()
    handler.run_local_subprocess = warm.run
    try:
        yield warm
    finally:
        handler.run_local_subprocess = original
        warm.stop()
