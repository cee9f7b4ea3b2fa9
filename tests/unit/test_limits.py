"""Bounded memory while images are inspected (issue 11): one pixel limit from the memory this process
has, checked from the header before decoding; JPEGs decoded in draft mode; concurrent decodes share
one budget."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from melanoma_mlops import limits
from melanoma_mlops.data import images


@pytest.fixture(autouse=True)
def _fresh_limits(monkeypatch: pytest.MonkeyPatch):
    limits.memory_limit_bytes.cache_clear()
    monkeypatch.setattr(images, "_budget", None)
    yield
    limits.memory_limit_bytes.cache_clear()


def test_the_memory_limit_is_the_smallest_of_cgroup_rlimit_and_ram(monkeypatch) -> None:
    monkeypatch.setattr(limits, "cgroup_memory_limit", lambda: 2 << 30)
    monkeypatch.setattr(limits, "_rlimit", lambda: None)
    monkeypatch.setattr(limits, "_physical", lambda: 64 << 30)
    assert limits.memory_limit_bytes() == 2 << 30
    assert limits.memory_limit() == (2 << 30, "its cgroup memory limit")
    limits.memory_limit_bytes.cache_clear()
    monkeypatch.setattr(limits, "cgroup_memory_limit", lambda: None)  # no cgroup limit: the machine's
    assert limits.memory_limit_bytes() == 64 << 30
    limits.memory_limit_bytes.cache_clear()
    monkeypatch.setattr(limits, "_rlimit", lambda: 1 << 30)
    assert limits.memory_limit_bytes() == 1 << 30


GIB = 2**30
NO_LIMIT_V1 = "9223372036854771712"


def _proc(tmp_path: Path, cgroup: str, mountinfo: str | None) -> Path:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text(cgroup)
    if mountinfo is not None:
        (proc / "self" / "mountinfo").write_text(mountinfo)
    return proc


def _limit(folder: Path, name: str, value: object) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(f"{value}\n")


def test_cgroup_v2_a_pod_below_its_parents(tmp_path: Path) -> None:
    fs = tmp_path / "sys"
    _limit(fs, "memory.max", "max")
    _limit(fs / "kubepods", "memory.max", 8 * GIB)
    _limit(fs / "kubepods" / "pod1", "memory.max", 3 * GIB)
    proc = _proc(tmp_path, "0::/kubepods/pod1\n", f"30 23 0:26 / {fs} rw - cgroup2 cgroup2 rw\n")
    assert limits.cgroup_memory_limit(proc) == 3 * GIB
    _limit(fs / "kubepods", "memory.max", 1 * GIB)  # a tighter parent binds its child
    assert limits.cgroup_memory_limit(proc) == 1 * GIB


def test_cgroup_v1_a_nested_slice_of_the_host_tree(tmp_path: Path) -> None:
    """This machine's layout: ``4:memory:/process_api/<id>``, the whole v1 tree mounted at
    /sys/fs/cgroup/memory; the limit sits on the slice, not at the mount's root (which used to be
    the only file read: 23.5 GiB inside a 2 GiB cgroup)."""
    fs = tmp_path / "sys" / "memory"
    _limit(fs, "memory.limit_in_bytes", NO_LIMIT_V1)
    _limit(fs / "process_api", "memory.limit_in_bytes", NO_LIMIT_V1)
    _limit(fs / "process_api" / "abc" / "test-1", "memory.limit_in_bytes", 2 * GIB)
    mountinfo = (
        f"31 23 0:28 / {tmp_path / 'sys'} rw,relatime - tmpfs tmpfs rw,mode=755\n"
        f"35 31 0:32 / {fs} rw,relatime - cgroup cgroup rw,memory\n"
        f"36 31 0:33 / {tmp_path / 'sys' / 'unified'} rw,relatime - cgroup2 cgroup2 rw\n"
    )
    cgroup = "9:name=systemd:/\n4:memory:/process_api/abc/test-1\n1:cpu:/\n0::/\n"
    assert limits.cgroup_memory_limit(_proc(tmp_path, cgroup, mountinfo)) == 2 * GIB


def test_cgroup_v1_a_container_with_its_own_cgroup_mounted_at_the_root(tmp_path: Path) -> None:
    """docker without a cgroup namespace: /proc/self/cgroup names the host path, the mount's root is
    that same path; the parent slice's limit is seen only through hierarchical_memory_limit."""
    fs = tmp_path / "sys" / "memory"
    _limit(fs, "memory.limit_in_bytes", NO_LIMIT_V1)
    (fs / "memory.stat").write_text(f"cache 0\nhierarchical_memory_limit {2 * GIB}\nrss 1\n")
    mountinfo = f"35 31 0:32 /docker/abc {fs} ro,nosuid - cgroup cgroup rw,memory\n"
    proc = _proc(tmp_path, "4:memory:/docker/abc\n", mountinfo)
    assert limits.cgroup_memory_limit(proc) == 2 * GIB


def test_cgroup_without_mountinfo_uses_the_usual_mount_points(tmp_path: Path) -> None:
    fs = tmp_path / "cgroup"
    _limit(fs / "memory" / "job", "memory.limit_in_bytes", 2 * GIB)
    proc = _proc(tmp_path, "12:pids:/job\n4:memory:/job\n0::/\n", None)
    assert limits.cgroup_memory_limit(proc, fs) == 2 * GIB
    (proc / "self" / "cgroup").write_text("4:memory:/\n")
    assert limits.cgroup_memory_limit(proc, fs) is None  # no limit: the machine's RAM decides
    assert limits.cgroup_memory_limit(tmp_path / "no-proc", fs) is None


def test_max_image_pixels_is_a_share_of_memory_and_can_be_overridden(monkeypatch) -> None:
    # A 2 GiB pod (the app's): a quarter of it at 8 bytes per pixel is 67 MP, so a 99 MP PNG is refused.
    assert limits.max_image_pixels(2 << 30) == (2 << 30) // 4 // 8
    assert limits.max_image_pixels(2 << 30) < 99_000_000
    monkeypatch.setenv(limits.PIXELS_ENV, "1234")
    assert limits.max_image_pixels(2 << 30) == 1234
    with pytest.raises(limits.ImageTooLargeError, match=r"40x40 \(0.0 MP\)"):
        limits.check_pixels(40, 40, 1000, what="image")


def test_the_budget_makes_large_decodes_wait_for_each_other() -> None:
    budget = limits.PixelBudget(100)
    order: list[str] = []
    with budget.reserve(70):
        worker = threading.Thread(target=lambda: (budget.reserve(50).__enter__(), order.append("second")))
        worker.start()
        time.sleep(0.2)
        order.append("first done")  # the second reservation could not start while 70 were held
    worker.join(5)
    assert order == ["first done", "second"]
    with pytest.raises(limits.ImageTooLargeError):
        budget.reserve(101).__enter__()


def _png(path: Path, side: int) -> Path:
    Image.fromarray(np.full((side, side, 3), 128, np.uint8)).save(path)
    return path


def test_an_image_over_the_limit_is_reported_not_decoded(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(limits.PIXELS_ENV, str(100 * 100))
    big = _png(tmp_path / "big.png", 200)
    decoded: list[int] = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(1) or real_load(self))
    info = images.inspect(str(big))
    assert info.error is not None and info.error.startswith("too large to decode: 200x200")
    assert (info.width, info.height) == (200, 200) and info.sha256
    assert decoded == []
    assert images.inspect(str(_png(tmp_path / "small.png", 90))).error is None


def test_a_jpeg_is_decoded_in_draft_mode_within_the_limit(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(limits.PIXELS_ENV, str(200 * 200))
    jpeg = tmp_path / "big.jpg"
    Image.fromarray(np.full((800, 800, 3), 90, np.uint8)).save(jpeg, quality=90)
    info = images.inspect(str(jpeg))  # 640,000 pixels declared, 100x100 decoded at 1/8 scale
    assert info.error is None and (info.width, info.height) == (800, 800) and info.phash
