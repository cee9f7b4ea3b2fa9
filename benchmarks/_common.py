"""Shared bits of the benchmark scripts (timing, peak memory)."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The project's environment defaults (oneDNN on, telemetry off) before any script imports TensorFlow,
# as in a pipeline step: scripts import this module first (``import _common`` sorts before keras).
import melanoma_mlops  # noqa: F401


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    """Fastest wall time of ``repeats`` calls (the least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
