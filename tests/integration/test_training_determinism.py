"""Op determinism, bit for bit: the same seed trains both stages to identical weights and histories.

Four ResNet50 trainings in this process (minutes on 2 cores): too heavy for the unit tier, which
keeps precision's cheap checks (tests/unit/test_speed_precision.py)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd

from melanoma_mlops.config import TrainingConfig
from melanoma_mlops.model import schedules


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
