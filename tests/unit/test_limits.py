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


def test_the_memory_limit_is_the_smallest_of_cgroup_rlimit_and_ram(monkeypatch, tmp_path: Path) -> None:
    cgroup = tmp_path / "memory.max"
    cgroup.write_text(str(2 << 30))
    monkeypatch.setattr(limits, "_CGROUP_V2", cgroup)
    monkeypatch.setattr(limits, "_CGROUP_V1", tmp_path / "absent")
    monkeypatch.setattr(limits, "_rlimit", lambda: None)
    monkeypatch.setattr(limits, "_physical", lambda: 64 << 30)
    assert limits.memory_limit_bytes() == 2 << 30
    limits.memory_limit_bytes.cache_clear()
    cgroup.write_text("max")  # no cgroup limit: the machine's memory
    assert limits.memory_limit_bytes() == 64 << 30
    limits.memory_limit_bytes.cache_clear()
    monkeypatch.setattr(limits, "_rlimit", lambda: 1 << 30)
    assert limits.memory_limit_bytes() == 1 << 30


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
