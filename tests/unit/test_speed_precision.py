"""Precision by hardware, and op determinism (same seed, same result on a CPU)."""

from __future__ import annotations

from pathlib import Path

import keras
import pytest

from melanoma_mlops.config import TrainingConfig
from melanoma_mlops.errors import ConfigError
from melanoma_mlops.model import precision

CPU_NO_GPU = {"gpu_capability": [], "cpu_bf16": False}


@pytest.mark.parametrize(
    ("option", "hardware", "dtype"),
    [
        ("auto", {"gpu_capability": [(9, 0)], "cpu_bf16": True}, "float16"),
        ("auto", {"gpu_capability": [(8, 0), (7, 0)], "cpu_bf16": False}, "float16"),
        ("auto", {"gpu_capability": [(6, 1)], "cpu_bf16": True}, "float32"),  # no tensor cores
        ("auto", {"gpu_capability": [], "cpu_bf16": True}, "bfloat16"),
        ("auto", CPU_NO_GPU, "float32"),
        ("on", {"gpu_capability": [(6, 1)], "cpu_bf16": False}, "float16"),
        ("on", CPU_NO_GPU, "bfloat16"),
        ("off", {"gpu_capability": [(9, 0)], "cpu_bf16": True}, "float32"),
        ("bfloat16", {"gpu_capability": [(9, 0)], "cpu_bf16": False}, "bfloat16"),
        ("float16", CPU_NO_GPU, "float16"),
    ],
)
def test_the_dtype_follows_the_hardware(option: str, hardware: dict, dtype: str) -> None:
    assert precision.choose_dtype(option, **hardware) == dtype


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 avx2\n\nprocessor\t: 1\n")
    flags = precision.cpu_flags(str(info))
    assert "avx512_bf16" in flags and precision.cpu_has_bf16(flags)
    assert not precision.cpu_has_bf16(frozenset({"avx2"}))
    assert precision.cpu_flags(str(tmp_path / "none")) == frozenset()


def test_auto_on_this_machine_is_bfloat16_exactly_when_the_cpu_has_it() -> None:
    if precision.gpu_present():
        pytest.skip("a GPU is visible: auto follows the GPU")
    expected = "mixed_bfloat16" if precision.cpu_has_bf16() else "float32"
    try:
        assert precision.set_precision("auto") == expected
        assert keras.mixed_precision.global_policy().name == expected
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_the_option_refuses_unknown_values() -> None:
    with pytest.raises(ConfigError, match="mixed-precision"):
        TrainingConfig(mixed_precision="fp8")
