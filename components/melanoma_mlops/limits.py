"""Memory limits of this process, and the image-pixel limit derived from them.

One rule for every place that decodes images from outside (validation, serving, the app): a
decoded image may take at most a share of the memory this process really has, checked from the
image header *before* decoding. "The memory this process has" is the smallest of

- the cgroup limit (``memory.max`` of cgroup v2, ``memory.limit_in_bytes`` of v1): a pod's
  ``resources.limits.memory``, a ``docker run --memory``, a systemd slice;
- ``RLIMIT_AS`` / ``RLIMIT_DATA`` when set (``ulimit -v``);
- the machine's physical memory.

API:

``memory_limit_bytes() -> int``
    The smallest of the three (cached; :func:`memory_limit_bytes.cache_clear` to re-read).
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
_CGROUP_V2 = Path("/sys/fs/cgroup/memory.max")
_CGROUP_V1 = Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")
# cgroup v1 reports "no limit" as a huge page-aligned number.
_UNLIMITED = 1 << 60


class ImageTooLargeError(ValueError):
    """An image has more pixels than this process may decode."""


def _cgroup_limit() -> int | None:
    for path in (_CGROUP_V2, _CGROUP_V1):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text and text != "max" and text.isdigit() and int(text) < _UNLIMITED:
            return int(text)
    return None


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


@functools.lru_cache(maxsize=1)
def memory_limit_bytes() -> int:
    """The memory this process may use: min(cgroup limit, rlimit, physical RAM); 8 GiB if unknown."""
    found = [m for m in (_cgroup_limit(), _rlimit(), _physical()) if m]
    return min(found) if found else 8 << 30


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
