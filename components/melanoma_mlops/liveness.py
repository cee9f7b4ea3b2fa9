"""Is the process that beat a run's heartbeat still that process, and still running? (stdlib only)

A pid alone cannot say: after ``kill -9`` the process may linger for a moment as a zombie (or be
tearing down gigabytes of memory) and still answer ``kill(pid, 0)``, and later its pid may belong to
another program. So a heartbeat records the beating process's *identity* - the machine's boot id,
its pid namespace and its start time (``/proc/PID/stat`` field 22, clock ticks since boot) - and a
process counts as alive only when a process with that pid exists with that same identity, is not a
zombie, is not exiting (``PF_EXITING`` in field 9) and has no SIGKILL pending.

Where ``/proc`` is missing, or the pid lives in another pid namespace (a container) or another boot,
the answer is "cannot tell" (None) and the caller falls back to the heartbeat's age.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PROC = Path("/proc")
#: ``PF_EXITING`` in the kernel's per-process flags: do_exit() has begun.
PF_EXITING = 0x4
SIGKILL_BIT = 1 << (9 - 1)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _stat_fields(pid: int, proc: Path = PROC) -> list[str] | None:
    """Fields 3.. of ``/proc/PID/stat`` (state first), or None when there is no such process.

    The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    """
    text = _read(proc / str(pid) / "stat")
    if ")" not in text:
        return None
    return text.rsplit(")", 1)[1].split()


def _namespace(pid: int | str, proc: Path = PROC) -> str:
    try:
        return os.readlink(proc / str(pid) / "ns" / "pid")
    except OSError:
        return ""


def identity(pid: int | None = None, proc: Path = PROC) -> str:
    """``<boot id>/<pid namespace>/<start time>`` of ``pid`` (default: this process); '' if unknown."""
    pid = os.getpid() if pid is None else pid
    fields = _stat_fields(pid, proc)
    boot = _read(proc / "sys" / "kernel" / "random" / "boot_id").strip()
    if not fields or len(fields) < 20 or not boot:
        return ""
    return f"{boot}/{_namespace(pid, proc)}/{fields[19]}"


def _dying(pid: int, fields: list[str], proc: Path) -> bool:
    """A zombie, a process in do_exit(), or one with SIGKILL pending (not yet scheduled to die)."""
    if fields[0] in ("Z", "X", "x"):
        return True
    if fields[6].isdigit() and int(fields[6]) & PF_EXITING:
        return True
    for line in _read(proc / str(pid) / "status").splitlines():
        key, _, value = line.partition(":")
        if key in ("SigPnd", "ShdPnd"):
            try:
                if int(value.strip(), 16) & SIGKILL_BIT:
                    return True
            except ValueError:
                continue
    return False


def is_alive(pid: int, recorded: str = "", proc: Path = PROC) -> bool | None:
    """True: the process that recorded ``recorded`` (its :func:`identity`) is running; False: it is
    gone, dying, a zombie, or ``pid`` now belongs to another process; None: this machine cannot tell.

    Without a recorded identity (a heartbeat written by an older version) only existence, zombie
    and exit state are checked.
    """
    if not (proc / "self" / "stat").exists():
        return None
    start = ""
    if recorded:
        boot, _, rest = recorded.partition("/")
        namespace, _, start = rest.rpartition("/")
        if boot != _read(proc / "sys" / "kernel" / "random" / "boot_id").strip():
            return None  # another boot (or another machine sharing the host name): pids mean nothing
        if namespace and namespace != _namespace("self", proc):
            return None  # another pid namespace (a container): its pids are not ours to look up
    # Only world-readable files of the other process are read (its stat and status), so another
    # user's process is judged as well as one's own.
    fields = _stat_fields(pid, proc)
    if fields is None or len(fields) < 20:
        return False
    if start and fields[19] != start:
        return False  # the pid was reused by another process
    return not _dying(pid, fields, proc)


def wait_gone(pid: int, recorded: str, timeout_s: float, proc: Path = PROC) -> bool:
    """Wait up to ``timeout_s`` until the process is no longer known to be alive; False if it still is.

    For a caller that has just seen it alive: a process killed a moment ago may not have been
    scheduled to die yet.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        alive = is_alive(pid, recorded, proc)
        if alive is not True:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
