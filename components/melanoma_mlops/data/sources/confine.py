"""A local data source never leads outside its root: the file walk every layout reads.

A data folder is input from outside as much as a CSV is: ``malignant/x.jpg -> /etc/passwd`` or a
symlinked ``benign/`` folder into someone else's files must not be opened, read or trained on. So
the walk that lists a local source resolves every entry (``os.path.realpath``, ``lstat`` and
``readlink`` only: nothing is opened) and keeps a file only when it is a regular file that really
lies below the root. What it leaves out is reported by name with the reason, never dropped in
silence:

- a symlink (file or folder) whose target is outside the root: left out, unless
  ``allow_outside_root`` (``--allow-outside-root``: class folders of symlinks into a shared image
  store are a common way to build a data set), which follows it (folders too, each real folder once);
- a symlinked folder whose target is inside the root: not followed (its files are listed where
  they really are), so nothing is counted twice and no link cycle is walked;
- a broken symlink, and anything that is not a regular file (a FIFO would block the first read,
  ``/dev/zero`` never end one).

An ``s3://`` source needs none of this: its listing holds only keys under the declared prefix.
"""

from __future__ import annotations

import logging
import os
import stat
from typing import NamedTuple

logger = logging.getLogger(__name__)

HINT = "pass --allow-outside-root to follow links out of the data root"


class Walk(NamedTuple):
    """The regular files below the root (sorted), and what was left out: rows of the excluded table."""

    files: list[str]
    left_out: list[dict[str, object]]


def _inside(real_root: str, real: str) -> bool:
    return os.path.commonpath([real_root, real]) == real_root


def _row(path: str, reason: str, target: str = "") -> dict[str, object]:
    return {"image_uri": path, "source_label": "", "reason": reason, "target": target}


def describe(row: dict[str, object]) -> str:
    """``path -> target: reason`` of a left-out entry, for messages."""
    arrow = f" -> {row['target']}" if row.get("target") else ""
    return f"{row['image_uri']}{arrow}: {row['reason']}"


def _regular(path: str) -> str | None:
    """Why ``path`` (after its symlinks) is not a regular file to read, or None when it is one."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return f"broken symlink or unreadable entry ({exc.strerror}): left out"
    if not stat.S_ISREG(mode):
        return "not a regular file (a device, FIFO or socket): left out, never opened"
    return None


def _verdict(path: str, real_root: str, allow_outside_root: bool) -> str | dict[str, object]:
    """``"file"`` (read it), ``"folder"`` (walk it) or the excluded row saying why it is left out.

    Only a link can lead elsewhere: the walk enters real folders of the root, and links' targets
    only when they are allowed out, so an entry that is no link is where its folder is.
    """
    linked = os.path.islink(path)
    real = os.path.realpath(path) if linked else path
    outside = linked and not _inside(real_root, real)
    is_dir = os.path.isdir(path)
    if linked and outside and not allow_outside_root:
        kind = "folder" if is_dir else "file"
        return _row(path, f"symlinked {kind} leading outside the data root: not opened; {HINT}", real)
    if is_dir and linked and not outside:
        return _row(
            path, "symlinked folder inside the data root: not followed, its files are read there", real
        )
    if is_dir:
        return "folder"
    why = _regular(path)
    return "file" if why is None else _row(path, why)


def walk_local(root: str, allow_outside_root: bool = False) -> Walk:
    """Every regular file below ``root`` that stays inside it (see the module docstring)."""
    real_root = os.path.realpath(root)
    files: list[str] = []
    left_out: list[dict[str, object]] = []
    seen_dirs = {real_root}
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            names = sorted(os.listdir(folder))
        except OSError as exc:
            left_out.append(_row(folder, f"folder cannot be listed ({exc.strerror}): left out"))
            continue
        for name in names:
            path = os.path.join(folder, name)
            verdict = _verdict(path, real_root, allow_outside_root)
            if verdict == "file":
                files.append(path)
            elif verdict == "folder":
                real = os.path.realpath(path)
                if real not in seen_dirs:  # a followed link may lead to a folder already walked
                    seen_dirs.add(real)
                    stack.append(path)
            else:
                left_out.append(verdict)  # type: ignore[arg-type]
    if left_out:
        logger.warning(
            "%d entries under %s are left out (not opened): %s",
            len(left_out),
            root,
            "; ".join(map(describe, left_out[:5])),
        )
    return Walk(sorted(files), left_out)
