"""Biopsy outcomes joined to logged predictions (docs/monitoring.md, "Outcomes"): the reading, the
join, the windows and the gate's floors, on frames small enough to check by hand."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from melanoma_mlops.config import GateConfig
from melanoma_mlops.errors import ConfigError, DataError
from melanoma_mlops.monitoring import outcomes
from melanoma_mlops.monitoring.monitor import parse_span

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "outcomes.csv"
    path.write_text(text)
    return path


def records(
    n: int, probability: list[float] | np.ndarray, hours_ago: list[float] | None = None
) -> pd.DataFrame:
    """``n`` logged predictions of one version: request ids r0.., image hashes h0..; threshold 0.5."""
    p = np.asarray(probability, float)
    ago = hours_ago if hours_ago is not None else [1.0] * n
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "image_sha256": [f"h{i}" for i in range(n)],
            "time": pd.to_datetime([NOW - timedelta(hours=h) for h in ago], utc=True),
            "probability": p,
            "threshold": 0.5,
            "label": (p >= 0.5).astype(int),
        }
    )


def test_reads_ids_hashes_and_every_accepted_label(tmp_path: Path) -> None:
    csv = write(tmp_path, "request_id,SHA256,label\nr1,,malignant\n,ABC,Benign\nr3,def,1\nr4,,0\n")
    table = outcomes.read_outcomes(csv)
    assert table.to_dict("list") == {
        "line": [2, 3, 4, 5],
        "key_kind": ["request_id", "sha256", "request_id", "request_id"],
        "key": ["r1", "abc", "r3", "r4"],  # a hash is compared in lower case; the id wins over it
        "label": [1, 0, 1, 0],
    }
    assert outcomes.read_outcomes(write(tmp_path, "image_sha256,label\nff,0\n"))["key_kind"].tolist() == [
        "sha256"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,label\nr1,1\n", "columns ['id', 'label']; an outcomes file needs `label` and `request_id`"),
        ("request_id,diagnosis\nr1,1\n", "needs `label`"),
        ("request_id,label\nr1,1\nr2,melanoma\n", "line 3: label 'melanoma' is not one of 0, 1, benign"),
        ("request_id,label\nr1,1\nr2,\n", "line 3: label '' is not one of"),
        ("request_id,label\nr1,1\nr2,0\nr1,0\n", "request_id r1 appears on lines [2, 4]"),
        ("sha256,label\naa,1\nAA,0\n", "sha256 aa appears on lines [2, 3]"),
        ("request_id,sha256,label\n,,1\n", "line 2 has neither a request_id nor a sha256"),
        ("request_id,label\n", "no outcome rows"),
    ],
)
def test_bad_outcomes_are_an_error_naming_the_row(tmp_path: Path, text: str, message: str) -> None:
    csv = write(tmp_path, text)
    with pytest.raises(DataError, match="^" + str(csv)) as caught:
        outcomes.read_outcomes(csv)
    assert message in str(caught.value)


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such outcomes file"):
        outcomes.read_outcomes(tmp_path / "nowhere.csv")


def test_join_by_id_and_hash_keeps_every_row() -> None:
    logged = records(4, [0.9, 0.2, 0.7, 0.1])
    # h1 was scored again later (its latest prediction is the one joined).
    again = logged.iloc[[1]].assign(request_id="r9", probability=0.6, label=1, time=pd.Timestamp(NOW))
    logged = pd.concat([logged, again], ignore_index=True)
    table = pd.DataFrame(
        {
            "line": [2, 3, 4, 5],
            "key_kind": ["request_id", "sha256", "request_id", "sha256"],
            "key": ["r0", "h1", "nope", "h404"],
            "label": [1, 0, 1, 0],
        }
    )
    matched, unmatched = outcomes.join(table, logged)
    assert matched[["key", "probability", "predicted", "label"]].values.tolist() == [
        ["r0", 0.9, 1, 1],
        ["h1", 0.6, 1, 0],
    ]
    assert unmatched.to_dict("list") == {
        "line": [4, 5],
        "key_kind": ["request_id", "sha256"],
        "key": ["nope", "h404"],
        "label": [1, 0],
    }
    _, none = outcomes.join(table, pd.DataFrame())
    assert len(none) == 4


def matched_frame(y: list[int], p: list[float], hours_ago: list[float] | None = None) -> pd.DataFrame:
    table = pd.DataFrame(
        {
            "line": range(2, 2 + len(y)),
            "key_kind": "request_id",
            "key": [f"r{i}" for i in range(len(y))],
            "label": y,
        }
    )
    matched, unmatched = outcomes.join(table, records(len(y), p, hours_ago))
    assert unmatched.empty
    return matched


def test_metrics_and_the_gates_floors() -> None:
    rng = np.random.default_rng(0)
    y = [1] * 40 + [0] * 40
    good = np.r_[rng.uniform(0.6, 1.0, 40), rng.uniform(0.0, 0.4, 40)]  # perfectly separated
    w = outcomes.window_metrics(matched_frame(y, list(good)), NOW - timedelta(days=1), NOW, GateConfig(), 200)
    assert w.point == {"sensitivity": 1.0, "specificity": 1.0, "auc_roc": 1.0}
    assert w.ci is not None and w.ci["sensitivity"][0] == 1.0 and w.below == [] and w.status == "ok"
    # Half the malignant lesions missed (scored under the threshold, though above every benign one:
    # AUC 1): sensitivity 0.5, its interval far under the 0.85 floor; only that floor is missed.
    poor = np.r_[rng.uniform(0.6, 1.0, 20), rng.uniform(0.35, 0.49, 20), rng.uniform(0.0, 0.3, 40)]
    w = outcomes.window_metrics(matched_frame(y, list(poor)), NOW - timedelta(days=1), NOW, GateConfig(), 200)
    assert w.point["sensitivity"] == 0.5 and w.ci is not None and w.ci["sensitivity"][1] < 0.85
    assert w.below == ["sensitivity"] and w.status == "flagged"
    # The floors are GateConfig's fields: lowering that one floor clears the flag.
    lenient = dataclasses.replace(GateConfig(), min_sensitivity=0.2)
    assert outcomes.window_metrics(matched_frame(y, list(poor)), NOW, NOW, lenient, 200).below == []
    assert set(outcomes.FLOORS.values()) <= {f.name for f in dataclasses.fields(GateConfig)}


def test_one_class_has_no_interval_and_no_flag() -> None:
    w = outcomes.window_metrics(matched_frame([0, 0, 0], [0.1, 0.7, 0.2]), NOW, NOW, GateConfig(), 50)
    assert w.ci is None and w.below == [] and w.status == "no interval"
    assert w.point["specificity"] == pytest.approx(2 / 3) and np.isnan(w.point["sensitivity"])


def test_windows_split_by_prediction_time() -> None:
    y = [1, 0] * 6
    p = [0.9, 0.1] * 6
    ago = [1, 1, 2, 2, 3, 3, 30, 30, 31, 31, 50, 50]  # hours before NOW: 3 days of 24 h
    found = outcomes.windows(
        matched_frame(y, p, ago), NOW - timedelta(hours=60), NOW, timedelta(hours=24), GateConfig(), 50
    )
    assert [(w.start, w.end, w.n) for w in found] == [
        (NOW - timedelta(hours=60), NOW - timedelta(hours=48), 2),
        (NOW - timedelta(hours=48), NOW - timedelta(hours=24), 4),
        (NOW - timedelta(hours=24), NOW, 6),
    ]
    with pytest.raises(ConfigError, match="--window '7 days'"):
        parse_span("7 days")


def test_the_floors_are_those_the_version_was_gated_with() -> None:
    strict = {"gate.min_auc": "0.9", "gate.min_sensitivity": "0.95", "gate.min_specificity": "0.6"}
    gate, source = outcomes.gate_floors({**strict, "gate.max_auc_drop": "0.02", "other": "x"})
    assert (gate.min_auc, gate.min_sensitivity, gate.min_specificity) == (0.9, 0.95, 0.6)
    assert source == outcomes.GATED
    gate, source = outcomes.gate_floors({"gate.min_auc": "0.9"})
    assert (gate.min_auc, gate.min_sensitivity) == (0.9, GateConfig().min_sensitivity)


def test_a_version_the_gate_never_saw_is_held_to_the_defaults_and_says_so() -> None:
    gate, source = outcomes.gate_floors({"monitor_status": "ok"})
    assert gate == GateConfig()
    assert "defaults" in source and source != outcomes.GATED
