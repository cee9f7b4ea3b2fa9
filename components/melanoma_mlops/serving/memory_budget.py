"""How many pixels this process can afford to decode, and how many decodes run at once.

Memory for decoding untrusted images is bounded three ways: an absolute ceiling
(:data:`MAX_IMAGE_PIXELS`); a limit derived from the memory this process may use (its cgroup's
``memory.max`` / ``memory.limit_in_bytes``, else the machine's RAM), what it already holds and what
one decode costs (:func:`pixel_limit`); and :data:`DECODE_SLOTS` decodes at a time per process
(:func:`decode_slot`, a semaphore held around each decode, so a burst of requests to
``mlflow models serve`` queues instead of decoding side by side). The header check
(:mod:`melanoma_mlops.serving.headers`) compares each image's decode cost with this budget.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from melanoma_mlops import limits

logger = logging.getLogger(__name__)

#: Images above this many pixels are refused from their header, whatever the memory: a few kB of
#: PNG can expand to gigabytes (a decompression bomb). 100 MP is ~4x a large dermatoscope image.
MAX_IMAGE_PIXELS = 100_000_000
#: Peak bytes per pixel of the training decode path (tf decode 3 B + float32 copy 12 B + resize),
#: measured on a 99-MP PNG: +1530 MiB. PNG, BMP, GIF and JPEGs too small to draft cost this.
DECODE_BYTES_PER_PIXEL = 16
#: Share of the memory left after what the process already holds that decoding may use; the
#: rest is headroom for inference, Grad-CAM and the server itself.
DECODE_MEMORY_FRACTION = 0.5
#: Concurrent decodes per process (a semaphore); more requests wait their turn.
DECODE_SLOTS = 1
#: At most DECODE_SLOTS decodes at a time in this process (threads of a scoring server, sessions
#: of the app): the memory budget below is per decode.
_decode_slots = threading.BoundedSemaphore(DECODE_SLOTS)


@contextlib.contextmanager
def decode_slot() -> Iterator[None]:
    """Hold one of the process's DECODE_SLOTS while decoding pixels (not reentrant)."""
    with _decode_slots:
        yield


def memory_limit() -> tuple[int, str]:
    """(bytes, where the number comes from): the cgroup limit (v2, v1, nested slices), an rlimit or
    the machine's RAM, whichever is smallest (:func:`melanoma_mlops.limits.memory_limit`)."""
    return limits.memory_limit()


#: ``mlflow models serve --workers N`` as an environment variable: N worker processes in one pod,
#: each with its own copy of the model, share its memory limit (pass the count this way, not as
#: ``--workers``, so each worker takes its share).
WORKERS_ENV = "MLFLOW_MODELS_WORKERS"


def workers() -> int:
    """Server processes sharing this process's memory limit (1 unless :data:`WORKERS_ENV` says more)."""
    raw = os.environ.get(WORKERS_ENV, "").strip()
    return max(1, int(raw)) if raw.isdigit() else 1


def free_bytes() -> tuple[int, int, str]:
    """(this process's share of the memory not yet held, the limit, where the limit comes from)."""
    memory, source = memory_limit()
    share = memory // workers()
    return max(share - resident_bytes(), 0), memory, source


def resident_bytes() -> int:
    """This process's resident memory now (0 where /proc is not there)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * int(os.sysconf("SC_PAGE_SIZE"))


@dataclass(frozen=True)
class DecodeBudget:
    """Bytes one decode may use, and why: what :func:`pixel_limit` is made of."""

    bytes_per_decode: int
    memory: int
    source: str

    @property
    def pixels(self) -> int:
        """Full-size decodes (PNG, BMP, GIF) that fit, capped by :data:`MAX_IMAGE_PIXELS`."""
        return min(MAX_IMAGE_PIXELS, self.bytes_per_decode // DECODE_BYTES_PER_PIXEL)

    def describe(self) -> str:
        return f"{self.source}, {self.memory / 2**30:.1f} GiB"


def compute_budget(memory: int, source: str, resident: int, slots: int = DECODE_SLOTS) -> DecodeBudget:
    free = max(memory - resident, 0)
    return DecodeBudget(int(free * DECODE_MEMORY_FRACTION / max(slots, 1)), memory, source)


_budget_lock = threading.Lock()
_budget: dict[str, DecodeBudget] = {}  # "current": the budget in force (computed on first use)


def decode_budget(refresh: bool = False) -> DecodeBudget:
    """This process's decode budget, computed once (again with ``refresh``).

    Whoever loads a model refreshes it afterwards (the pyfunc's ``load_context``, the app), so
    the memory the model holds is not counted as available for decoding.
    """
    with _budget_lock:
        if "current" not in _budget or refresh:
            free, memory, source = free_bytes()
            budget = _budget["current"] = compute_budget(memory, source, memory - free)
            logger.debug(
                "decode budget: %.0f MiB per decode (%d slot(s); %s)",
                budget.bytes_per_decode / 2**20,
                DECODE_SLOTS,
                budget.describe(),
            )
        return _budget["current"]


def pixel_limit(refresh: bool = False) -> int:
    """Pixels of a full-size decode this process can afford (at most :data:`MAX_IMAGE_PIXELS`)."""
    return decode_budget(refresh).pixels
