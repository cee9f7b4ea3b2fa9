"""A memory cgroup for one test: the pod's memory limit, on a machine without Kubernetes.

Creates a child of this process's own memory cgroup (cgroup v2: ``memory.max``; cgroup v1 or the
hybrid layout: ``memory.limit_in_bytes``), lets a command start inside it, and reads back its peak
usage and OOM kills. Needs write access to the cgroup tree (root, or a delegated subtree):
:func:`available` says why not, and the tests skip with that reason. ``systemd-run --scope -p
MemoryMax=`` does the same where systemd runs, which is not the case in these containers.

tests/ has no ``__init__.py``, so test modules import this as ``import memory_cgroup``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class MemoryCgroup:
    path: Path
    version: int

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    def wrap(self, cmd: list[str]) -> list[str]:
        """``cmd`` started inside this cgroup (the shell joins it, then execs the command)."""
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.procs), *cmd]

    def _read(self, name: str) -> str:
        return (self.path / name).read_text()

    def peak_bytes(self) -> int:
        return int(self._read("memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"))

    def current_bytes(self) -> int:
        return int(self._read("memory.current" if self.version == 2 else "memory.usage_in_bytes"))

    def oom_kills(self) -> int:
        text = self._read("memory.events" if self.version == 2 else "memory.oom_control")
        fields = dict(line.split() for line in text.splitlines() if len(line.split()) == 2)
        return int(fields.get("oom_kill", 0))

    def pids(self) -> list[int]:
        return [int(p) for p in self._read("cgroup.procs").split()]


#: Set by .ci/run on a cgroup v2 host: a folder whose children may limit memory (it moved itself
#: into a leaf below it and enabled +memory there: v2 allows no processes beside limited children).
PARENT_ENV = "MELANOMA_TEST_CGROUP_PARENT"


def _own() -> tuple[Path, int] | None:
    """(the memory cgroup directory test cgroups are made in, cgroup version), or None."""
    delegated = os.environ.get(PARENT_ENV, "")
    if delegated and "memory" in (Path(delegated) / "cgroup.subtree_control").read_text().split():
        return Path(delegated), 2
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            hierarchy, controllers, path = line.split(":", 2)
            rel = path.strip().lstrip("/")
            if "memory" in controllers.split(","):
                return ROOT / "memory" / rel, 1
            unified = ROOT / "cgroup.controllers"
            if hierarchy == "0" and unified.exists() and "memory" in unified.read_text().split():
                return ROOT / rel, 2
    return None


def available() -> str:
    """'' when a memory cgroup can be made here, else why not."""
    own = _own()
    if own is None:
        return "no memory cgroup controller for this process"
    if not os.access(own[0], os.W_OK):
        return f"{own[0]} is not writable (run as root or with a delegated cgroup)"
    return ""


@contextlib.contextmanager
def memory_cgroup(limit_bytes: int) -> Iterator[MemoryCgroup]:
    """A fresh child cgroup limited to ``limit_bytes``; every process left in it is killed at exit."""
    own = _own()
    if own is None:
        raise RuntimeError(available())
    parent, version = own
    path = parent / f"test-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    group = MemoryCgroup(path, version)
    try:
        if version == 2:
            (path / "memory.max").write_text(str(limit_bytes))
            with contextlib.suppress(OSError):
                (path / "memory.swap.max").write_text("0")
        else:
            (path / "memory.limit_in_bytes").write_text(str(limit_bytes))
        yield group
    finally:
        for _ in range(50):
            pids = group.pids()
            if not pids:
                break
            for pid in pids:  # only processes this test started: the cgroup is ours alone
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        with contextlib.suppress(OSError):
            path.rmdir()
