"""A small filesystem for one test: a tmpfs of a few MB mounted on a folder, so that a write really
fails with ENOSPC (the full disk of issue 24), on a machine without spare disks.

Needs root (or CAP_SYS_ADMIN) and ``mount``: :func:`available` says why not, and the tests that need
a real full disk skip with that reason; the injected-ENOSPC tests cover the same code paths
everywhere. tests/ has no ``__init__.py``, so test modules import this as ``import small_volume``.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _mount(folder: Path, size_bytes: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )


@functools.cache
def available() -> str:
    """'' when a tmpfs can be mounted here, else why not."""
    if shutil.which("mount") is None:
        return "no mount command"
    with tempfile.TemporaryDirectory() as tmp:
        result = _mount(Path(tmp), 1 << 20)
        if result.returncode != 0:
            return f"cannot mount a tmpfs here ({result.stderr.strip() or 'not root'})"
        subprocess.run(["umount", tmp], check=False)
    return ""


@contextlib.contextmanager
def small_volume(folder: Path, size_bytes: int) -> Iterator[Path]:
    """``folder`` as a fresh tmpfs of ``size_bytes``; unmounted (and its content gone) afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    result = _mount(folder, size_bytes)
    if result.returncode != 0:
        raise RuntimeError(f"mount tmpfs on {folder}: {result.stderr}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def used_bytes(folder: Path) -> int:
    """Bytes of every file below ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def fill(folder: Path, leave_bytes: int) -> Path:
    """Write a filler file so that only about ``leave_bytes`` stay free on ``folder``'s filesystem:
    fill it up to ENOSPC (others may be writing at the same time), then give ``leave_bytes`` back."""
    filler = folder / ".filler"
    block = b"\0" * (1 << 20)
    with filler.open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(block)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        size = fh.tell()
    with filler.open("r+b") as fh:
        fh.truncate(max(0, size - leave_bytes))
    return filler
