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
(:func:`installed`); ``tests/unit/test_warm_steps.py`` checks the command shape it relies on.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import threading
import traceback
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
    "kfp.dsl.executor_main",
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
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)  # noqa: T201 - what Python prints for SystemExit("message")
    return 1


def _step(command: StepCommand, env: dict[str, str], cwd: str, out: Connection) -> None:
    """The forked step: kfp.local's shell line, in Python (runs in the child, never returns)."""
    os.dup2(out.fileno(), 1)
    os.dup2(out.fileno(), 2)
    out.close()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    os.environ.clear()
    os.environ.update({**env, "_KFP_RUNTIME": "true"})
    os.chdir(cwd)
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, MODULE_FILE)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(command.source)
    sys.argv = [EXECUTOR, "--component_module_path", path, *command.args]
    code = 1
    try:
        from kfp.dsl.executor_main import executor_main

        executor_main()
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException:  # noqa: BLE001 - as an uncaught exception ends a Python process
        traceback.print_exc()
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
def _quiet_std_streams() -> Iterator[None]:
    """File descriptors 1 and 2 on /dev/null for a process started in this block (it inherits them)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


class WarmSteps:
    """Runs kfp.local's step commands as forks of a warm process (one per run: :func:`installed`)."""

    def __init__(self, fallback: Callable[..., int]) -> None:
        self.fallback = fallback
        self.context = mp.get_context("forkserver")
        self.available = True
        self.forked = 0

    def start(self) -> None:
        """Start the warm process now (it imports while the run sets up); fall back on failure."""
        from multiprocessing import forkserver

        try:
            self.context.set_forkserver_preload(list(PRELOAD))
            with _quiet_std_streams():  # its imports' banners are not the run's output
                forkserver.ensure_running()
        except (OSError, ValueError) as exc:
            logger.warning("warm step process unavailable (%s): each step starts a new process", exc)
            self.available = False

    def stop(self) -> None:
        from multiprocessing import forkserver

        server = getattr(forkserver, "_forkserver", None)
        if server is not None and hasattr(server, "_stop"):
            with contextlib.suppress(OSError, ChildProcessError):
                server._stop()

    def run(self, full_command: list[str], env_vars: dict[str, str] | None = None) -> int:
        """kfp.local's ``run_local_subprocess``: stream the step's output through ``print``, return
        its exit status."""
        command = StepCommand.parse(full_command) if self.available else None
        if command is None:
            return self.fallback(full_command=full_command, env_vars=env_vars)
        read_fd, write_fd = os.pipe()
        writer = Connection(write_fd, readable=False)
        process = self.context.Process(
            target=_step, args=(command, {**os.environ, **(env_vars or {})}, os.getcwd(), writer)
        )
        try:
            process.start()
        except (OSError, EOFError) as exc:
            writer.close()
            os.close(read_fd)
            logger.warning("could not fork the step from the warm process (%s): a new process runs it", exc)
            self.available = False
            return self.fallback(full_command=full_command, env_vars=env_vars)
        writer.close()
        self.forked += 1
        try:
            with open(read_fd, encoding="utf-8", errors="replace") as lines:
                for line in lines:
                    print(line, end="")  # noqa: T201 - kfp.local streams a step through print
            print("\n")  # noqa: T201 - kfp.local's separator after a step's output
            process.join()
        except BaseException:
            process.terminate()  # SIGTERM: the step marks its MLflow runs KILLED
            process.join(timeout=30)
            raise
        return process.exitcode if process.exitcode is not None else 1


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
