"""A live run is told from a dead one reliably (issue 24): a zombie, a dying process or a reused pid is
not the process that beat a heartbeat, so ``--resume`` right after ``kill -9`` and ``runs reap`` are
not fooled by it. The fake ``/proc`` trees pin each rule of the kernel's files; a real zombie is
tests/integration/test_liveness_zombie.py's."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from melanoma_mlops import heartbeat, liveness, tracking
from melanoma_mlops.errors import ConfigError
from melanoma_pipelines import parent_run

BOOT = "0b6f0d5c-1111-2222-3333-444455556666"
NS = "pid:[4026531836]"


def _fake_proc(
    tmp_path: Path, pid: int, *, state: str = "S", flags: int = 0x400100, start: int = 12345,
    sigpnd: str = "0000000000000000", ns: str = NS, comm: str = "python (x) y",
) -> Path:  # fmt: skip
    proc = tmp_path / "proc"
    (proc / "sys" / "kernel" / "random").mkdir(parents=True, exist_ok=True)
    (proc / "sys" / "kernel" / "random" / "boot_id").write_text(BOOT + "\n")
    for name in ("self", str(pid)):
        folder = proc / name
        (folder / "ns").mkdir(parents=True, exist_ok=True)
        if not (folder / "ns" / "pid").is_symlink():
            (folder / "ns" / "pid").symlink_to(NS if name == "self" else ns)
        fields = [state, "1", "1", "1", "0", "-1", str(flags), *["0"] * 12, str(start), "0"]
        (folder / "stat").write_text(f"{pid} ({comm}) {' '.join(fields)}\n")
        (folder / "status").write_text(f"Name:\tpython\nSigPnd:\t{sigpnd}\nShdPnd:\t0000000000000000\n")
    return proc


def test_the_identity_names_boot_namespace_and_start_time(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, 4242)
    assert liveness.identity(4242, proc) == f"{BOOT}/{NS}/12345"
    assert liveness.is_alive(4242, f"{BOOT}/{NS}/12345", proc) is True


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"state": "Z"}, "a zombie"),
        ({"flags": 0x400104}, "exiting (PF_EXITING)"),
        ({"sigpnd": "0000000000000100"}, "SIGKILL pending"),
        ({"start": 99999}, "the pid now belongs to a process started later"),
    ],
)
def test_a_zombie_a_dying_process_or_a_reused_pid_is_not_alive(
    tmp_path: Path, change: dict, why: str
) -> None:
    proc = _fake_proc(tmp_path, 4242, **change)
    assert liveness.is_alive(4242, f"{BOOT}/{NS}/12345", proc) is False, why


def test_a_process_that_is_gone_is_not_alive_and_other_namespaces_cannot_be_told(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, 4242)
    assert liveness.is_alive(4243, f"{BOOT}/{NS}/12345", proc) is False
    assert liveness.is_alive(4243, "", proc) is False  # an older heartbeat without an identity
    assert liveness.is_alive(4242, f"{BOOT}/pid:[4026532999]/12345", proc) is None  # a container's pid
    assert liveness.is_alive(4242, f"another-boot/{NS}/12345", proc) is None
    assert liveness.is_alive(4242, "", tmp_path / "no-proc") is None


def _running_parent(client: MlflowClient, pid: int, identity: str) -> str:
    run_id = tracking.start_pipeline_run("resumable")
    tracking.log_parent_params(run_id, {"data": "/nowhere", "stage1_lr": 0.001})
    for key, value in {
        heartbeat.HEARTBEAT_HOST_TAG: socket.gethostname(),
        heartbeat.HEARTBEAT_PID_TAG: str(pid),
        heartbeat.HEARTBEAT_PROCESS_TAG: identity,
        heartbeat.HEARTBEAT_AT_TAG: heartbeat._iso(heartbeat._now()),
    }.items():
        client.set_tag(run_id, key, value)
    return run_id


def test_resume_refuses_a_live_run_but_not_one_whose_pid_was_reused(
    mlflow_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parent_run, "KILLED_GRACE_S", 0.2)
    client = MlflowClient()
    me = liveness.identity()
    live = _running_parent(client, os.getpid(), me)
    with pytest.raises(ConfigError, match="is still running"):
        parent_run.prepare_resume(live)
    boot, namespace, start = me.split("/")
    reused = _running_parent(client, os.getpid(), f"{boot}/{namespace}/{int(start) - 1}")
    run_id, *_ = parent_run.prepare_resume(reused)  # a fresh heartbeat, but from a process now gone
    assert run_id == reused
