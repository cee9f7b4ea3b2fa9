"""Issue 24: ``limits.memory_limit_bytes()`` read the cgroup tree's root (23.5 GiB inside a 2 GiB
cgroup v1). A real process in a real 2 GiB memory cgroup must read 2 GiB, and the serving budget must
say where it came from. The layouts the kernel can present (v2, v1, hybrid, a container's own cgroup
at the mount's root) are covered with fake /proc trees in tests/unit/test_limits.py; this is the one
check against the kernel. Skipped where no memory cgroup can be made."""

from __future__ import annotations

import subprocess
import sys

import memory_cgroup
import pytest
from docker_env import in_ci

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(  # CI=true: fail (memory_cgroup raises why), as a missing tool does
        bool(memory_cgroup.available()) and not in_ci(), reason=memory_cgroup.available() or "-"
    ),
]
GIB = 2**30


def test_the_memory_limit_is_read_inside_a_2_gib_cgroup() -> None:
    code = (
        "from melanoma_mlops import limits; from melanoma_mlops.serving import memory_budget; "
        "print(limits.memory_limit_bytes(), *memory_budget.memory_limit())"
    )
    with memory_cgroup.memory_cgroup(2 * GIB) as group:
        out = subprocess.run(
            group.wrap([sys.executable, "-c", code]), capture_output=True, text=True, check=True, timeout=120
        ).stdout.split(maxsplit=2)
    assert int(out[0]) == int(out[1]) == 2 * GIB
    assert out[2].strip() == "its cgroup memory limit"
