"""A real zombie (issue 24): a child that has exited and not been reaped still answers
``kill(pid, 0)``, yet it is not the live process that beat a heartbeat. tests/unit/test_liveness.py
pins every other rule on fake ``/proc`` trees."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from melanoma_mlops import liveness


def test_a_real_zombie_is_dead_and_this_process_alive() -> None:
    me = liveness.identity()
    assert me and liveness.is_alive(os.getpid(), me) is True
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    recorded = ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # it exits, and stays a zombie until we reap it
        fields = liveness._stat_fields(child.pid)
        if not recorded and fields and fields[0] != "Z":
            recorded = liveness.identity(child.pid)
        if fields and fields[0] == "Z":
            break
        time.sleep(0.01)
    try:
        assert liveness._stat_fields(child.pid)[0] == "Z"
        assert liveness.is_alive(child.pid, recorded) is False
        assert liveness.is_alive(child.pid) is False  # kill(pid, 0) would still succeed here
    finally:
        child.wait()
