"""Several devices: MirroredStrategy, global batch = per-device batch x replicas, linear lr rule.

Two logical CPU devices stand in for two GPUs (the real tf.distribute code path). Logical devices
must be configured before TensorFlow initialises, so each run is a subprocess of its own.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from melanoma_mlops.model import distribute

SCRIPT = r"""
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import tensorflow as tf
devices = int(sys.argv[1])
if devices > 1:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
import pandas as pd
from melanoma_mlops.config import TrainingConfig
from melanoma_mlops.model import distribute, schedules
from pathlib import Path
paths = sorted(Path(sys.argv[2]).glob("*/*.png"))
labels = [int(p.parent.name == "malignant") for p in paths]
df = pd.DataFrame({"image_uri": [str(p) for p in paths], "label": labels}).sample(frac=1.0, random_state=0)
augment = sys.argv[4] == "augment"
gpu = len(sys.argv) > 5 and sys.argv[5] == "gpu"  # a multi-GPU node's defaults: float16, XLA
# The same global batch (16) and effective learning rate (1e-3) on one device and on two.
cfg = TrainingConfig(image_size=32, batch_size=16 // devices, weights="none", stage1_epochs=2,
                     stage1_lr=1e-3 / devices, patience=2, mixed_precision="float16" if gpu else "off",
                     xla="on" if gpu else "off", augment=augment, dropout=0.5 if augment else 0.0,
                     stage2_epochs=1)
names = [d.name for d in tf.config.list_logical_devices("CPU")]
strategy = distribute.strategy(names) if devices > 1 else None
result, setup = schedules.run(schedules.stage1(cfg), cfg, df.iloc[:28], df.iloc[28:], sys.argv[3], seed=0,
                              strategy=strategy)
out = {"setup": setup.params("stage1"), "history": result.history,
       "strategy": type(strategy or tf.distribute.get_strategy()).__name__}
if gpu:  # Stage 2 too: every layer trains (BatchNorm folded, the fused Adam under loss scaling)
    result2, setup2 = schedules.run(schedules.stage2(cfg), cfg, df.iloc[:28], df.iloc[28:], sys.argv[3] + "2",
                                    seed=0, previous_model_dir=sys.argv[3], strategy=strategy)
    out["stage2"] = {"setup": setup2.params("stage2"), "history": result2.history}
print("RESULT " + json.dumps(out))
"""


def _train(devices: int, demo_dir: Path, out: Path, augment: bool, gpu: bool = False) -> dict:
    mode = "augment" if augment else "plain"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(devices), str(demo_dir), str(out), mode, "gpu" if gpu else "cpu"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


@pytest.mark.integration
def test_two_devices_train_under_mirrored_strategy_like_one(demo_dir: Path, tmp_path: Path) -> None:
    one = _train(1, demo_dir, tmp_path / "one", augment=False)
    two = _train(2, demo_dir, tmp_path / "two", augment=False)
    assert two["strategy"] == "MirroredStrategy" and one["strategy"] != "MirroredStrategy"
    assert two["setup"]["stage1_replicas"] == 2 and two["setup"]["stage1_global_batch"] == 16
    assert two["setup"]["stage1_lr_effective"] == pytest.approx(one["setup"]["stage1_lr_effective"])
    assert two["setup"]["lr_rule"] == distribute.LR_RULE
    # Same global batch, same effective rate, same seeded order: the same updates up to the order of
    # the cross-device gradient sum. An untrained 32-px ResNet magnifies such rounding (Adam's first
    # steps follow gradient signs), so the tolerance is loose; a wrong batch or lr rule is far off.
    h1, h2 = one["history"], two["history"]
    for epoch in (0, 1):
        assert h2["val_loss"][epoch] == pytest.approx(h1["val_loss"][epoch], rel=0.1)
        assert h2["val_auc"][epoch] == pytest.approx(h1["val_auc"][epoch], abs=0.1)
    assert (tmp_path / "two" / "model.keras").is_file()


@pytest.mark.integration
def test_augmentation_runs_per_replica_under_the_strategy(demo_dir: Path, tmp_path: Path) -> None:
    two = _train(2, demo_dir, tmp_path / "two", augment=True)
    assert two["strategy"] == "MirroredStrategy" and two["setup"]["stage1_replicas"] == 2
    assert all(math.isfinite(v) for v in two["history"]["loss"])


@pytest.mark.integration
@pytest.mark.slow  # ~1.5 min; the strategy is covered above, float16 + XLA in both stages by
# tests/integration/test_speed_gpu_path.py::test_the_gpu_settings_train_both_stages_on_the_cpu
def test_a_multi_gpu_nodes_settings_train_both_stages_with_the_strategy(
    demo_dir: Path, tmp_path: Path
) -> None:
    """Two logical devices with what ``auto`` picks on tensor-core GPUs: mixed float16 and XLA."""
    two = _train(2, demo_dir, tmp_path / "two", augment=True, gpu=True)
    assert two["strategy"] == "MirroredStrategy"
    for stage, result in (("stage1", two), ("stage2", two["stage2"])):
        setup = result["setup"]
        assert setup[f"{stage}_replicas"] == 2 and setup[f"{stage}_dtype_policy"] == "mixed_float16"
        assert setup[f"{stage}_xla"] is True
        assert all(math.isfinite(v) for v in result["history"]["loss"] + result["history"]["val_loss"])
