"""What a local run prints: one line per step start and finish ("step 4/9 stage1"), the steps' own
progress lines (one per epoch, with an ETA), warnings and errors; everything else only with
``--verbose``, and all of it, unfiltered, in a log file.

kfp.local runs each step as a subprocess and echoes its output line by line through ``print``
(inside an indenting ``print`` of its own), and reports tasks through the root logger. A local run
therefore routes ``builtins.print`` through :class:`Console` and filters kfp's root-logger records:
the executor-input JSON that kfp logs before every step, TensorFlow's start-up banners (oneDNN
and CPU-instruction notices that ``TF_CPP_MIN_LOG_LEVEL`` does not silence; oneDNN itself stays on,
turning it off makes Stage 2 about 2x slower), Keras' progress lines and kfp's task summaries. A
ticker prints a "still running" line when nothing was shown for a while, so a long step is never
silent for longer than that.
"""

from __future__ import annotations

import builtins
import logging
import re
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

#: Seconds without a printed line before the ticker says what is still running. The ticker looks
#: every 5 s, so the console is never silent for more than 30 s while a step runs (issue 22: a step
#: starting under load spends 20-40 s importing before its first line).
DEFAULT_QUIET_S = 25.0

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: The steps' own log records (runtime.configure_logging's format).
_RECORD = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d{3} (?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"(?P<name>[\w.]+): (?P<message>.*)$"
)
#: Starts of other records: each one ends whatever multi-line record came before it.
_OTHER_STARTS = (
    re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL):[\w.]*:"),  # logging's default format (kfp)
    re.compile(r"^\d\d:\d\d:\d\d\.\d+ - (DEBUG|INFO|WARNING|ERROR|CRITICAL) - "),  # kfp.local's format
    re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d"),  # glog (TensorFlow, absl)
    re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] "),  # TensorFlow's C++ log
    re.compile(r"^WARNING: All log messages before absl"),
    re.compile(r"^Epoch \d+/\d+"),  # Keras fit(verbose=2)
    re.compile(r"^\d+/\d+ - "),
    re.compile(r"^\S+:\d+: \w*Warning: "),  # Python warnings
    re.compile(r"^ {2}warnings\.warn\("),
    re.compile(r"^\W* View (run|experiment)\b.* at: https?://"),  # MLflow's end-of-run links
)
_EXECUTING = re.compile(r"Executing task '?([\w-]+)'?")
_FINISHED = re.compile(r"Task '?([\w-]+)'? finished with status (\w+)")


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class _KfpRecords(logging.Filter):
    """kfp.local's own records on the root logger: turned into step lines, the rest dropped."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "root" or "kfp" not in record.pathname.replace("\\", "/"):
            return True
        message = _ANSI.sub("", record.getMessage())
        if started := _EXECUTING.search(message):
            self.console.step_started(started.group(1))
        elif finished := _FINISHED.search(message):
            self.console.step_finished(finished.group(1), finished.group(2))
        return self.console.verbose


class Console:
    """Route a local run's output through the filter described in the module docstring.

    ``steps``: the DAG's task names in order (for "step k/N"); empty when unknown (the ablation's
    parallel trials). Use as a context manager around the kfp.local call.
    """

    def __init__(
        self,
        log_path: str | Path,
        *,
        steps: Sequence[str] = (),
        verbose: bool = False,
        quiet_s: float = DEFAULT_QUIET_S,
        out: TextIO | None = None,
    ) -> None:
        self.log_path = Path(log_path)
        self.steps = list(steps)
        self.verbose = verbose
        self.quiet_s = quiet_s
        self.out = out
        self.started = time.monotonic()
        self.last_output = self.started
        self.running: dict[str, float] = {}
        self.seen: list[str] = []
        self.lines_shown = 0
        self._buffer = ""
        self._keep = False
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="console-ticker", daemon=True)
        self._print: Any = builtins.print
        self._filter = _KfpRecords(self)
        self._log: TextIO | None = None
        self._urllib3_level = logging.NOTSET

    # ------------------------------------------------------------------------------ plumbing
    def __enter__(self) -> Console:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("a", encoding="utf-8", errors="backslashreplace")
        self._print = builtins.print
        builtins.print = self._printed
        logging.getLogger().addFilter(self._filter)
        # This process's own retry chatter (the heartbeat of the parent run while a server is down):
        # the step that fails says it in one line.
        self._urllib3_level = logging.getLogger("urllib3").level
        if not self.verbose:
            logging.getLogger("urllib3").setLevel(logging.ERROR)
        self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._ticker.join(timeout=1.0)
        with self._lock:
            if self._buffer:
                self._line(self._buffer)
                self._buffer = ""
        builtins.print = self._print
        logging.getLogger().removeFilter(self._filter)
        logging.getLogger("urllib3").setLevel(self._urllib3_level)
        if self._log is not None:
            self._log.close()

    def _stream(self) -> TextIO:
        return self.out or sys.stdout

    def show(self, text: str) -> None:
        """Print one line to the user (and the log)."""
        with self._lock:
            self._print(text, file=self._stream(), flush=True)
            if self._log is not None:
                self._log.write(f"# {text}\n")
                self._log.flush()
            self.last_output = time.monotonic()
            self.lines_shown += 1

    def _printed(self, *args: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None, **_: Any):
        if file is not None and file not in (sys.stdout, sys.stderr):
            return self._print(*args, sep=sep, end=end, file=file)
        sep = " " if sep is None else sep
        text = sep.join(str(a) for a in args) + ("\n" if end is None else end)
        with self._lock:
            if self._log is not None:
                self._log.write(text)
                self._log.flush()
            if self.verbose:
                self._print(text, end="", file=self._stream(), flush=True)
                self.last_output = time.monotonic()
                return None
            self._buffer += text
            *lines, self._buffer = self._buffer.split("\n")
            for line in lines:
                self._line(line)
        return None

    # ------------------------------------------------------------------------------ filtering
    def _line(self, raw: str) -> None:
        line = _ANSI.sub("", raw).strip()
        if not line or set(line) <= {"-"}:
            return
        record = _RECORD.match(line)
        if record is not None:
            name, level = record.group("name"), record.group("level")
            self._keep = name.startswith("melanoma") and level != "DEBUG"
            if self._keep:
                prefix = "" if level == "INFO" else f"{level}: "
                self.show(f"    {prefix}{record.group('message')}")
            return
        if any(p.match(line) for p in _OTHER_STARTS) or line.startswith("Traceback (most recent call last)"):
            self._keep = False  # another record, or a traceback: the error line says it, the log has it
            return
        if self._keep:  # a continuation line of a shown record (a multi-line error message)
            self.show(f"      {line}")

    # ------------------------------------------------------------------------------ steps
    def _label(self, task: str) -> str:
        name = task.replace("-", "_")
        if name in self.steps:
            return f"step {self.steps.index(name) + 1}/{len(self.steps)} {name}"
        return f"step {len(self.seen)} {name}"

    def step_started(self, task: str) -> None:
        with self._lock:
            self.seen.append(task)
            self.running[task] = time.monotonic()
            self.show(f"{self._label(task)}: started")

    def step_finished(self, task: str, status: str) -> None:
        with self._lock:
            began = self.running.pop(task, time.monotonic())
            now = time.monotonic()
            verb = "done" if status.upper() == "SUCCESS" else "FAILED"
            self.show(
                f"{self._label(task)}: {verb} in {_duration(now - began)} "
                f"(run time {_duration(now - self.started)})"
            )

    def step_failed(self) -> None:
        """kfp.local raises on a failed task without logging it: close the running steps' lines."""
        with self._lock:
            for task in list(self.running):
                self.step_finished(task, "FAILED")

    def _tick(self) -> None:
        while not self._stop.wait(min(5.0, self.quiet_s)):
            with self._lock:
                now = time.monotonic()
                if self.running and now - self.last_output >= self.quiet_s:
                    task, began = next(iter(self.running.items()))
                    self.show(f"    ... {task.replace('-', '_')} still running ({_duration(now - began)})")


#: The last line of a Python traceback: ``ModuleNotFoundError: No module named 'x'``.
_EXCEPTION_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b.*)$")


def last_exception(log_path: Path) -> str:
    """The exception line ending the last traceback in a run's log, or "".

    A step that dies before our runtime wraps it (a failed import in the component, a missing
    package) reports nothing to the error file; its traceback is only in the log."""
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    tracebacks = [i for i, line in enumerate(lines) if "Traceback (most recent call last)" in line]
    start = tracebacks[-1] if tracebacks else -1
    if start < 0:
        return ""
    found = ""
    for line in lines[start + 1 :]:
        if line.lstrip().startswith("# step"):
            break
        if match := _EXCEPTION_LINE.match(line):
            found = match.group(1).strip()
    return found
