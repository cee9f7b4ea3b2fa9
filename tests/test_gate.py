"""The promotion gate's decision table, on numbers alone: no MLflow, no TensorFlow, milliseconds."""

from __future__ import annotations

import subprocess
import sys

import pytest

from melanoma_mlops.errors import ConfigError
from melanoma_mlops.registry.gate import Candidate, ChampionComparison, GateLimits, decide

LIMITS = GateLimits(min_auc=0.80, min_sensitivity=0.85, max_auc_drop=0.02)
GOOD = Candidate("2", auc=0.91, sensitivity=0.90, threshold=0.4)


def test_no_champion_and_within_limits_promotes() -> None:
    d = decide(GOOD, None, LIMITS, auto_promote=True)
    assert d.passed and d.action == "promoted" and d.promote
    assert [c.name for c in d.checks] == ["auc", "sensitivity", "vs_champion"]
    assert "no champion yet" in d.reason


def test_passing_without_auto_promote_only_recommends() -> None:
    d = decide(GOOD, None, LIMITS, auto_promote=False)
    assert d.passed and d.action == "recommended" and not d.promote


@pytest.mark.parametrize(
    ("candidate", "failed"),
    [
        (Candidate("2", auc=0.79, sensitivity=0.90, threshold=0.4), "auc"),
        (Candidate("2", auc=0.91, sensitivity=0.84, threshold=0.4), "sensitivity"),
    ],
)
def test_an_absolute_limit_rejects(candidate: Candidate, failed: str) -> None:
    d = decide(candidate, None, LIMITS, auto_promote=True)
    assert not d.passed and d.action == "rejected"
    assert [c.name for c in d.checks if not c.passed] == [failed]
    assert d.reason.startswith("failed: ")


def test_worse_than_the_champion_on_the_same_images_rejects() -> None:
    champion = ChampionComparison(
        "1", compare_auc=0.95, candidate_compare_auc=0.92, compared_on="all 90 test images"
    )
    d = decide(GOOD, champion, LIMITS, auto_promote=True)
    assert d.action == "rejected"
    (check,) = [c for c in d.checks if not c.passed]
    assert check.name == "vs_champion" and check.value == pytest.approx(-0.03)
    assert "vs champion v1" in check.detail and "all 90 test images" in check.detail


def test_within_the_allowed_drop_of_the_champion_promotes() -> None:
    champion = ChampionComparison("1", compare_auc=0.93, candidate_compare_auc=0.915, compared_on="x")
    assert decide(GOOD, champion, LIMITS, auto_promote=True).action == "promoted"


def test_a_champion_that_cannot_be_scored_fails_closed() -> None:
    champion = ChampionComparison("1", error="OSError: artifact missing")
    d = decide(GOOD, champion, LIMITS, auto_promote=True)
    assert d.action == "rejected" and "could not be scored" in d.reason


def test_a_leaky_candidate_is_rejected_whatever_its_figures() -> None:
    d = decide(
        Candidate("3", auc=1.0, sensitivity=1.0, threshold=0.5, leaky=True), None, LIMITS, auto_promote=True
    )
    assert d.action == "rejected"
    assert d.checks[0].name == "lineage" and "LEAKY (negative control)" in d.reason


def test_limits_outside_0_1_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"min_auc 1\.5"):
        GateLimits(min_auc=1.5, min_sensitivity=0.85, max_auc_drop=0.02)


def test_the_gate_module_imports_neither_tensorflow_nor_mlflow() -> None:
    code = (
        "import sys; import melanoma_mlops.registry.gate; "
        "bad = [m for m in ('tensorflow', 'keras', 'mlflow') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
