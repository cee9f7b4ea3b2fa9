"""The linear scaling rule of several devices, on numbers (the MirroredStrategy runs themselves are
tests/integration/test_speed_distribute.py: each needs a TensorFlow process of its own)."""

from __future__ import annotations

import pytest

from melanoma_mlops.model import distribute


def test_the_linear_scaling_rule() -> None:
    assert distribute.scaled_lr(1e-5, 1) == 1e-5
    assert distribute.scaled_lr(1e-5, 8) == pytest.approx(8e-5)
