"""The promotion gate's decision, as a pure function of numbers: :func:`decide`.

Absolute limits alone let a model that is fine but worse than the one in service through; a
comparison with the champion's *own* test metrics compares two test sets as much as two models.
So the gate takes the candidate's figures and the comparison with the champion on the *same* test
images (computed by :mod:`melanoma_mlops.registry.scoring`) and applies value limits plus a change
limit (the TFX Evaluator's value thresholds + change thresholds). A rejected candidate is an
outcome, not an error. Nothing here touches MLflow, Keras or files, so the decision table is
tested in milliseconds (``tests/test_gate.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from melanoma_mlops.artifacts import LEAKY_LABEL
from melanoma_mlops.errors import ConfigError
from melanoma_mlops.registry.report import fmt

ACTIONS = ("promoted", "recommended", "rejected")


@dataclass(frozen=True)
class GateLimits:
    """Value limits (on the candidate) and the change limit (vs the champion)."""

    min_auc: float
    min_sensitivity: float
    max_auc_drop: float

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not 0.0 <= float(value) <= 1.0:
                raise ConfigError(f"{name} {value} is outside [0, 1]")


@dataclass(frozen=True)
class Candidate:
    """The candidate's figures on the test set, at its own frozen threshold."""

    version: str
    auc: float
    sensitivity: float
    threshold: float
    #: Trained under the ablation's leaky negative control (never promotable).
    leaky: bool = False


@dataclass(frozen=True)
class ChampionComparison:
    """The champion scored on the candidate's test images (or why it could not be)."""

    version: str
    compare_auc: float | None = None
    candidate_compare_auc: float | None = None
    compared_on: str = ""
    error: str | None = None

    @property
    def auc_delta(self) -> float | None:
        if self.compare_auc is None or self.candidate_compare_auc is None:
            return None
        return self.candidate_compare_auc - self.compare_auc


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    value: float | None
    limit: float | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    passed: bool
    action: str
    reason: str
    checks: tuple[Check, ...]

    @property
    def promote(self) -> bool:
        return self.action == "promoted"


def _value_checks(c: Candidate, limits: GateLimits) -> list[Check]:
    auc_ok = c.auc >= limits.min_auc
    sens_ok = c.sensitivity >= limits.min_sensitivity
    return [
        Check(
            "auc",
            auc_ok,
            c.auc,
            limits.min_auc,
            f"AUC {fmt(c.auc)} {'>=' if auc_ok else '<'} {limits.min_auc}",
        ),
        Check(
            "sensitivity",
            sens_ok,
            c.sensitivity,
            limits.min_sensitivity,
            f"sensitivity {fmt(c.sensitivity)} at threshold {c.threshold:.4g} "
            f"{'>=' if sens_ok else '<'} {limits.min_sensitivity}",
        ),
    ]


def _champion_check(champion: ChampionComparison | None, limits: GateLimits) -> Check:
    if champion is None:
        return Check("vs_champion", True, None, limits.max_auc_drop, "no champion yet: absolute limits only")
    if champion.error is not None or champion.auc_delta is None:
        # Fail closed: a champion we cannot score is not evidence that the candidate is as good.
        return Check(
            "vs_champion",
            False,
            None,
            limits.max_auc_drop,
            f"champion v{champion.version} could not be scored on this test set ({champion.error}); "
            "promote manually with --force if that is expected",
        )
    delta = champion.auc_delta
    return Check(
        "vs_champion",
        delta >= -limits.max_auc_drop,
        delta,
        -limits.max_auc_drop,
        f"AUC {fmt(champion.candidate_compare_auc)} vs champion v{champion.version} "
        f"{fmt(champion.compare_auc)} (delta {delta:+.4f}, allowed drop {limits.max_auc_drop}) "
        f"on {champion.compared_on}",
    )


def decide(
    candidate: Candidate,
    champion: ChampionComparison | None,
    limits: GateLimits,
    *,
    auto_promote: bool,
) -> Decision:
    """Pass when every check passes; promote only then and only with ``auto_promote``.

    ``champion`` is None when there is no champion (or the candidate is the champion itself).
    """
    checks = [*_value_checks(candidate, limits), _champion_check(champion, limits)]
    if candidate.leaky:
        checks.insert(
            0,
            Check(
                "lineage",
                False,
                None,
                None,
                f"trained under the ablation's {LEAKY_LABEL}: tested on copies of its training images",
            ),
        )
    passed = all(c.passed for c in checks)
    if passed:
        reason = "passed: " + "; ".join(c.detail for c in checks)
    else:
        reason = "failed: " + "; ".join(c.detail for c in checks if not c.passed)
    action = "promoted" if passed and auto_promote else ("recommended" if passed else "rejected")
    return Decision(passed, action, reason, tuple(checks))
