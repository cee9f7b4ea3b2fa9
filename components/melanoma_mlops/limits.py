"""Memory limits of this process, and the image-pixel limit derived from them.

One rule for every place that decodes images from outside (validation, serving, the app): a
decoded image may take at most a share of the memory this process really has, checked from the
image header *before* decoding. "The memory this process has" is the smallest of

- the cgroup limit (``memory.max`` of cgroup v2, ``memory.limit_in_bytes`` of v1): a pod's
  ``resources.limits.memory``, a ``docker run --memory``, a systemd slice. Read where the kernel says
  this process's cgroup is (:func:`cgroup_memory_limit`: ``/proc/self/cgroup`` mapped through the
  cgroup mounts of ``/proc/self/mountinfo``), at every level up to the mount's root (a limit on a
  parent slice binds its children), plus v1's ``hierarchical_memory_limit`` (the parents' limits even
  where their files are not mounted);
- ``RLIMIT_AS`` / ``RLIMIT_DATA`` when set (``ulimit -v``);
- the machine's physical memory.

API:

``memory_limit_bytes() -> int``
    The smallest of the three (cached; :func:`memory_limit_bytes.cache_clear` to re-read).
``memory_limit() -> (int, str)``
    The same, with where it comes from (for messages).
``max_image_pixels(memory_bytes=None, *, share=DEFAULT_SHARE, bytes_per_pixel=BYTES_PER_PIXEL) -> int``
    Pixels one decoded image may have: ``share`` of the memory at ``bytes_per_pixel`` (RGBA
    decode plus one converted copy). ``MELANOMA_MAX_IMAGE_PIXELS`` overrides it.
``PixelBudget(total_pixels=None)``
    A shared budget for concurrent decodes (threads of one process): ``with budget.reserve(n):``
    waits until ``n`` pixels fit beside the decodes in progress, so many threads never hold more
    than the budget at once, while one large image still gets all of it. ``reserve`` raises
    :class:`ImageTooLargeError` when ``n`` exceeds the whole budget.
``check_pixels(width, height, limit, what="image") -> None``
    Raise :class:`ImageTooLargeError` with a message naming the size and the limit.

Standard library only: the serving image and the app import it without the data layer.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator
from pathlib import Path

#: Share of the process's memory one decoded image may take.
DEFAULT_SHARE = 0.25
#: Bytes per pixel of a decode: 4 (RGBA) for the decoded image plus 4 for a converted copy.
BYTES_PER_PIXEL = 8
#: Overrides :func:`max_image_pixels` (an integer number of pixels).
PIXELS_ENV = "MELANOMA_MAX_IMAGE_PIXELS"
PROC = Path("/proc")
#: Where cgroups are mounted when /proc/self/mountinfo cannot be read.
CGROUP_ROOT = Path("/sys/fs/cgroup")
# cgroup v1 reports "no limit" as a huge page-aligned number.
_UNLIMITED = 1 << 60


class ImageTooLargeError(ValueError):
    """An image has more pixels than this process may decode."""


def _read_limit(path: Path, key: str = "") -> int | None:
    """A limit in bytes from a cgroup file (``key``: the line of a ``memory.stat``); None if none."""
    try:
        text = path.read_text()
    except OSError:
        return None
    if key:
        text = next((line.split()[1] for line in text.splitlines() if line.startswith(key + " ")), "")
    text = text.strip()
    if not text.isdigit():  # "max" (v2), missing
        return None
    value = int(text)
    return value if 0 < value < _UNLIMITED else None


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def _cgroup_mounts(proc: Path) -> dict[str, list[tuple[str, Path]]]:
    """``{"v2": [(root, mount point)], "v1": [...]}``: cgroup2 mounts, and v1 mounts of the memory
    controller, from ``mountinfo`` (a container sees only its own part of the tree)."""
    found: dict[str, list[tuple[str, Path]]] = {"v2": [], "v1": []}
    try:
        lines = (proc / "self" / "mountinfo").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        head, sep, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if not sep or len(fields) < 5 or len(rest) < 3:
            continue
        root, point = _unescape(fields[3]), Path(_unescape(fields[4]))
        if rest[0] == "cgroup2":
            found["v2"].append((root, point))
        elif rest[0] == "cgroup" and "memory" in rest[2].split(","):
            found["v1"].append((root, point))
    return found


def _levels(path: str, root: str, point: Path) -> list[Path]:
    """The folders of cgroup ``path`` from its own up to the mount point (``root`` mounted there)."""
    rel = Path(path).relative_to(root) if Path(path).is_relative_to(root) else Path()
    here, levels = point / rel, []
    while True:
        levels.append(here)
        if here == point or point not in here.parents:
            return levels
        here = here.parent


def cgroup_memory_limit(proc: Path = PROC, cgroup_root: Path = CGROUP_ROOT) -> int | None:
    """The tightest memory limit on this process's cgroup and its ancestors (v2, v1, hybrid), or None.

    ``/proc/self/cgroup`` names the cgroup (``0::/path`` for v2, ``N:memory:/path`` for v1);
    ``mountinfo`` says where that tree is mounted and which part of it (a container's mount root is
    its own cgroup). Without mountinfo the usual mount points under ``cgroup_root`` are assumed.
    """
    try:
        memberships = (proc / "self" / "cgroup").read_text().splitlines()
    except OSError:
        return None
    mounts = _cgroup_mounts(proc)
    limits: list[int | None] = []
    for line in memberships:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        path = path.strip() or "/"
        if hierarchy == "0" and controllers == "":
            where, name = mounts["v2"] or [("/", cgroup_root)], "memory.max"
        elif "memory" in controllers.split(","):
            where, name = mounts["v1"] or [("/", cgroup_root / "memory")], "memory.limit_in_bytes"
        else:
            continue
        for root, point in where:
            levels = _levels(path, root, point)
            limits += [_read_limit(level / name) for level in levels]
            if name == "memory.limit_in_bytes":  # v1 also knows its ancestors' limits
                limits.append(_read_limit(levels[0] / "memory.stat", "hierarchical_memory_limit"))
    found = [v for v in limits if v is not None]
    return min(found) if found else None


def _rlimit() -> int | None:
    try:
        import resource
    except ImportError:  # not on POSIX
        return None
    limits = []
    for name in ("RLIMIT_AS", "RLIMIT_DATA"):
        which = getattr(resource, name, None)
        if which is None:
            continue
        soft, _ = resource.getrlimit(which)
        if soft not in (resource.RLIM_INFINITY, -1) and soft > 0:
            limits.append(int(soft))
    return min(limits) if limits else None


def _physical() -> int | None:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def memory_limit() -> tuple[int, str]:
    """(bytes, where the number comes from): min(cgroup limit, rlimit, physical RAM); 8 GiB if unknown."""
    found = [
        (value, source)
        for value, source in (
            (cgroup_memory_limit(), "its cgroup memory limit"),
            (_rlimit(), "its address-space rlimit"),
            (_physical(), "the machine's memory"),
        )
        if value
    ]
    return min(found) if found else (8 << 30, "an assumed 8 GiB")


@functools.lru_cache(maxsize=1)
def memory_limit_bytes() -> int:
    """The memory this process may use: min(cgroup limit, rlimit, physical RAM); 8 GiB if unknown."""
    return memory_limit()[0]


def max_image_pixels(
    memory_bytes: int | None = None, *, share: float = DEFAULT_SHARE, bytes_per_pixel: int = BYTES_PER_PIXEL
) -> int:
    """Pixels one decoded image may have in this process (see the module docstring)."""
    override = os.environ.get(PIXELS_ENV, "").strip()
    if override:
        try:
            return max(1, int(override))
        except ValueError:
            raise ValueError(f"{PIXELS_ENV}={override!r} is not a whole number of pixels") from None
    memory = memory_limit_bytes() if memory_bytes is None else memory_bytes
    return max(1, int(memory * share / bytes_per_pixel))


def describe(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} MP"


def check_pixels(width: int, height: int, limit: int, what: str = "image") -> None:
    pixels = int(width) * int(height)
    if pixels > limit:
        raise ImageTooLargeError(
            f"{what} is {width}x{height} ({describe(pixels)}): more than the {describe(limit)} this process "
            f"may decode ({DEFAULT_SHARE:.0%} of its {memory_limit_bytes() / 2**30:.1f} GiB memory limit); "
            "downscale it"
        )


class PixelBudget:
    """Pixels that concurrent decodes may hold at once (see the module docstring)."""

    def __init__(self, total_pixels: int | None = None) -> None:
        self.total = total_pixels if total_pixels is not None else max_image_pixels()
        self.in_use = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, pixels: int) -> Iterator[None]:
        pixels = max(0, int(pixels))
        if pixels > self.total:
            raise ImageTooLargeError(
                f"{describe(pixels)} is more than the {describe(self.total)} this process may decode at once"
            )
        with self._cond:
            self._cond.wait_for(lambda: self.in_use + pixels <= self.total)
            self.in_use += pixels
        try:
            yield
        finally:
            with self._cond:
                self.in_use -= pixels
                self._cond.notify_all()
