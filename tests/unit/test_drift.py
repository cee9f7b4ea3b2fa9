"""The drift rule (docs/monitoring.md) on columns drawn from known distributions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from melanoma_mlops.errors import ConfigError
from melanoma_mlops.monitoring import drift
from melanoma_mlops.monitoring.monitor import parse_since
from melanoma_mlops.serving.image_stats import STAT_COLUMNS


def frame(rng: np.random.Generator, n: int, shift: float = 0.0, score_shift: float = 0.0) -> pd.DataFrame:
    data = {c: rng.normal(100 + shift, 10, n) for c in STAT_COLUMNS}
    data["probability"] = np.clip(rng.beta(2, 5, n) + score_shift, 0, 1)
    data["label"] = (data["probability"] >= 0.5).astype(int)
    return pd.DataFrame(data)


def test_the_same_distribution_is_ok_in_most_windows() -> None:
    """False alarms at the documented rates: the score test's 5% for drift, a family-wise 5% for warn."""
    rng = np.random.default_rng(0)
    statuses = [drift.assess(frame(rng, 200), frame(rng, 100)).status for _ in range(100)]
    rates = {status: statuses.count(status) / len(statuses) for status in drift.STATUSES}
    assert rates["drift"] <= 0.08 and rates["warn"] <= 0.08 and rates["ok"] >= 0.85, rates


def test_a_shifted_camera_is_drift_and_one_column_a_warning() -> None:
    rng = np.random.default_rng(1)
    shifted = drift.assess(frame(rng, 200), frame(rng, 100, shift=8))
    assert shifted.status == "drift" and shifted.drifted_share == 1.0
    one = frame(rng, 100)
    one["sharpness"] -= 15
    warned = drift.assess(frame(rng, 200), one)
    assert warned.status == "warn" and "sharpness" in warned.reasons[0]


def test_scores_alone_drifting_is_drift() -> None:
    rng = np.random.default_rng(2)
    report = drift.assess(frame(rng, 200), frame(rng, 100, score_shift=0.3))
    assert report.status == "drift" and "score distribution" in report.reasons[0]
    assert report.flagged_rate_current > report.flagged_rate_reference


def test_a_large_reference_is_judged_by_effect_size() -> None:
    rng = np.random.default_rng(3)
    col = drift.column_drift("brightness", rng.normal(100, 10, 5000), rng.normal(100.5, 10, 5000))
    assert col.method == "wasserstein_distance_norm" and not col.drifted  # 0.05 sd: K-S would flag it


def test_a_small_or_incomplete_window_warns() -> None:
    rng = np.random.default_rng(4)
    report = drift.assess(frame(rng, 200), frame(rng, 10), incomplete=3)
    assert report.status == "warn"
    assert any("only 10 records" in r for r in report.reasons)
    assert any("3 records were dropped" in r for r in report.reasons)


def test_since() -> None:
    now = datetime(2026, 5, 8, 12, tzinfo=UTC)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("24h", now) == now - timedelta(hours=24)
    assert parse_since("2026-05-01", now) == datetime(2026, 5, 1, tzinfo=UTC)
    with pytest.raises(ConfigError, match="--since 'last week'"):
        parse_since("last week", now)
