"""Precision by hardware, and op determinism (same seed, same result on a CPU)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from melanoma_mlops.config import TrainingConfig
from melanoma_mlops.errors import ConfigError
from melanoma_mlops.model import precision, schedules

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


def _train_twice(demo_dir: Path, tmp_path: Path) -> list[tuple[dict, list[np.ndarray]]]:
    paths = sorted(demo_dir.glob("*/*.png"))
    df = pd.DataFrame(
        {"image_uri": [str(p) for p in paths], "label": [int(p.parent.name == "malignant") for p in paths]}
    )
    df = df.sample(frac=1.0, random_state=1)
    cfg = TrainingConfig(image_size=32, batch_size=8, weights="none", stage1_epochs=2, patience=2,
                         stage2_epochs=1, deterministic="on")  # fmt: skip
    out = []
    for run in ("a", "b"):
        r1, _ = schedules.run(
            schedules.stage1(cfg), cfg, df.iloc[:30], df.iloc[30:], str(tmp_path / run / "1"), seed=5
        )
        r2, setup = schedules.run(
            schedules.stage2(cfg), cfg, df.iloc[:30], df.iloc[30:], str(tmp_path / run / "2"), seed=5,
            previous_model_dir=str(tmp_path / run / "1"),
        )  # fmt: skip
        assert setup.deterministic
        from melanoma_mlops.model import network

        weights = network.load(tmp_path / run / "2" / "model.keras").get_weights()
        out.append(({"stage1": r1.history, "stage2": r2.history}, weights))
    keras.mixed_precision.set_global_policy("float32")
    return out


def test_the_same_seed_gives_bit_identical_training(demo_dir: Path, tmp_path: Path) -> None:
    (history_a, weights_a), (history_b, weights_b) = _train_twice(demo_dir, tmp_path)
    assert history_a == history_b
    assert len(weights_a) == len(weights_b)
    for a, b in zip(weights_a, weights_b, strict=True):
        np.testing.assert_array_equal(a, b)
