"""The GPU path, exercised where it can be without a GPU: the GPU's settings (mixed float16 with loss
scaling, XLA) training on the CPU, and ``benchmarks/bench_gpu.py`` itself (``--cpu-dry-run``).

MirroredStrategy over two logical CPU devices is tests/integration/test_speed_distribute.py.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import keras
import pandas as pd
import pytest

from melanoma_mlops.config import TrainingConfig
from melanoma_mlops.model import schedules

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _frame(demo_dir: Path) -> pd.DataFrame:
    paths = sorted(demo_dir.glob("*/*.png"))
    labels = [int(p.parent.name == "malignant") for p in paths]
    return pd.DataFrame({"image_uri": [str(p) for p in paths], "label": labels}).sample(
        frac=1.0, random_state=0
    )


def test_the_gpu_settings_train_both_stages_on_the_cpu(demo_dir: Path, tmp_path: Path) -> None:
    """``auto`` on a tensor-core GPU means mixed float16 + XLA: the same code path, here on the CPU."""
    df = _frame(demo_dir)
    cfg = TrainingConfig(image_size=32, batch_size=8, weights="none", stage1_epochs=1, stage2_epochs=1,
                         patience=1, mixed_precision="float16", xla="on")  # fmt: skip
    try:
        r1, s1 = schedules.run(
            schedules.stage1(cfg), cfg, df.iloc[:24], df.iloc[24:], str(tmp_path / "1"), seed=0
        )
        r2, s2 = schedules.run(schedules.stage2(cfg), cfg, df.iloc[:24], df.iloc[24:], str(tmp_path / "2"),
                               seed=0, previous_model_dir=str(tmp_path / "1"))  # fmt: skip
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for setup in (s1, s2):
        assert setup.dtype_policy == "mixed_float16" and setup.xla
    for result in (r1, r2):
        assert all(math.isfinite(v) for v in result.history["loss"] + result.history["val_loss"])
    assert r2.trainable_params > r1.trainable_params > 0


def _bench_gpu(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_gpu.py"), *args],
        cwd=BENCHMARKS, capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip


def test_bench_gpu_without_a_gpu_says_so() -> None:
    proc = _bench_gpu()
    assert proc.returncode == 2
    assert "no GPU is visible to TensorFlow" in proc.stderr and "--cpu-dry-run" in proc.stderr


def _check_dry_run(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for stage in ("stage1", "stage2"):
        for variant in ("float32", "mixed_float16", "mixed_float16 +XLA", "mixed_float16 +XLA +augmentation"):
            assert f"{stage} {variant} " in proc.stdout, (stage, variant)
    assert "store + augmentation on the GPU" in proc.stdout


@pytest.mark.integration
@pytest.mark.slow  # ~4 min (XLA compiles every variant); the GPU settings' training is covered by
# test_the_gpu_settings_train_both_stages_on_the_cpu, the script's start by the no-GPU test
def test_bench_gpu_cpu_dry_run_runs_its_throughput_parts(tmp_path: Path) -> None:
    proc = _bench_gpu("--cpu-dry-run", "--skip-pipeline", "--json", str(tmp_path / "gpu.json"))
    _check_dry_run(proc)
    assert (tmp_path / "gpu.json").is_file()


@pytest.mark.integration
@pytest.mark.slow  # a whole tiny pipeline (2-4 min); the GPU settings' training is covered above and
# in test_speed_distribute.py, the DAG by tests/integration/test_pipeline_local.py
def test_bench_gpu_cpu_dry_run_runs_every_part(tmp_path: Path) -> None:
    proc = _bench_gpu("--cpu-dry-run", "--json", str(tmp_path / "gpu.json"))
    _check_dry_run(proc)
    assert "pipeline, 2 epochs per stage" in proc.stdout
