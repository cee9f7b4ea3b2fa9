"""The promotion gate's decision, as a pure function of numbers: :func:`decide`.

A gate on point estimates promotes on luck: a model scored on 11 test images can clear any limit by
chance. So every figure here comes with its 95% bootstrap interval (groups resampled, computed by
:mod:`melanoma_mlops.registry.scoring` on the registered pyfunc's own scores), and:

* **evidence first** -- below a minimum number of malignant and benign test images nothing is
  promoted automatically (the version stays registered as ``challenger``; the reason says so);
* **value limits on the lower bound** -- AUC, and sensitivity *and* specificity at the frozen
  operating point, must clear their limits with their lower 95% bound, not their point estimate;
* **change limit by a paired test** -- the champion is scored on the *same* images, and the
  candidate must be non-inferior: the lower 95% bound of the paired bootstrap AUC difference
  (candidate − champion, the same resampled groups for both) must lie above ``-max_auc_drop``;
* **no subgroup left behind** -- in every subgroup (sex, age band, site, ...) with enough images of
  both classes, the lower bounds of the paired differences in AUC *and* in sensitivity must lie
  above ``-max_slice_drop``; a candidate worse on one subgroup is *held* (registered, not promoted
  automatically) with the subgroup named, for a person to decide.

These are the TFX Evaluator's value thresholds + change thresholds, with uncertainty. A rejected
candidate is an outcome, not an error. Nothing here touches MLflow, Keras or files, so the decision
table is tested in milliseconds (``tests/unit/test_gate.py``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from melanoma_mlops.artifacts import LEAKY_LABEL
from melanoma_mlops.errors import ConfigError
from melanoma_mlops.registry.report import fmt, fmt_ci

#: promoted: passed and auto-promotion on; recommended: passed, auto-promotion off; held: too few
#: test images to decide automatically, or worse than the champion on a subgroup (a person decides);
#: rejected: a limit failed (or the leaky control).
ACTIONS = ("promoted", "recommended", "held", "rejected")
CONFIDENCE = 0.95

Interval = tuple[float, float]


@dataclass(frozen=True)
class GateLimits:
    """Evidence minimums, value limits (on lower 95% bounds) and the non-inferiority margin."""

    min_auc: float
    min_sensitivity: float
    min_specificity: float
    max_auc_drop: float
    min_test_positives: int
    min_test_negatives: int
    #: Per-subgroup non-inferiority margin (AUC and sensitivity), and the cases a subgroup needs.
    max_slice_drop: float = 0.05
    min_slice_positives: int = 5
    min_slice_negatives: int = 5

    def __post_init__(self) -> None:
        for name in ("min_auc", "min_sensitivity", "min_specificity", "max_auc_drop", "max_slice_drop"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ConfigError(f"{name} {value} is outside [0, 1]")
        for name in (
            "min_test_positives",
            "min_test_negatives",
            "min_slice_positives",
            "min_slice_negatives",
        ):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"{name} {getattr(self, name)} is negative")


@dataclass(frozen=True)
class Candidate:
    """The candidate's figures on the test set at its own frozen threshold, with 95% intervals."""

    version: str
    auc: float
    sensitivity: float
    specificity: float
    threshold: float
    auc_ci: Interval
    sensitivity_ci: Interval
    specificity_ci: Interval
    n_positive: int
    n_negative: int
    #: Trained under the ablation's leaky negative control (never promotable).
    leaky: bool = False
    #: The task's class names (0, 1), as the reasons say them.
    class_names: tuple[str, str] = ("benign", "malignant")


@dataclass(frozen=True)
class SliceComparison:
    """One subgroup of the test set scored by both models: paired differences candidate − champion
    (``None`` when the subgroup was too small to compare)."""

    name: str
    n_positive: int
    n_negative: int
    auc_delta: float | None = None
    auc_delta_ci: Interval | None = None
    sensitivity_delta: float | None = None
    sensitivity_delta_ci: Interval | None = None


@dataclass(frozen=True)
class ChampionComparison:
    """The champion scored on the candidate's test images (or why it could not be).

    ``delta_ci`` is the paired bootstrap interval of ``candidate_compare_auc - compare_auc``.
    """

    version: str
    compare_auc: float | None = None
    candidate_compare_auc: float | None = None
    delta_ci: Interval | None = None
    compared_on: str = ""
    error: str | None = None
    #: The same comparison per subgroup (AUC and sensitivity).
    slices: tuple[SliceComparison, ...] = ()

    @property
    def auc_delta(self) -> float | None:
        if self.compare_auc is None or self.candidate_compare_auc is None:
            return None
        return self.candidate_compare_auc - self.compare_auc


@dataclass(frozen=True)
class Check:
    """One line of the decision: ``value`` is what was compared with ``limit`` (for interval
    checks the lower bound), ``estimate`` and ``interval`` the figure it came from."""

    name: str
    passed: bool
    value: float | None
    limit: float | None
    detail: str
    estimate: float | None = None
    interval: Interval | None = None

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


def _evidence_check(c: Candidate, limits: GateLimits) -> Check:
    short = []
    negative, positive = c.class_names
    if c.n_positive < limits.min_test_positives:
        short.append(f"{c.n_positive} {positive} < {limits.min_test_positives}")
    if c.n_negative < limits.min_test_negatives:
        short.append(f"{c.n_negative} {negative} < {limits.min_test_negatives}")
    if short:
        detail = (
            f"too few test images to promote automatically ({', '.join(short)}): with so few the "
            "intervals below are unreliable; registered as @challenger only"
        )
    else:
        detail = (
            f"test set of {c.n_positive} {positive} and {c.n_negative} {negative} images "
            f"(minimum {limits.min_test_positives} and {limits.min_test_negatives})"
        )
    return Check("test_size", not short, float(min(c.n_positive, c.n_negative)), None, detail)


def _lower_bound_check(
    name: str, label: str, estimate: float, ci: Interval, limit: float, note: str = ""
) -> Check:
    low = ci[0]
    ok = math.isfinite(low) and low >= limit
    return Check(
        name,
        ok,
        low,
        limit,
        f"{label} {fmt(estimate)}{note} {fmt_ci(ci)}: lower bound {fmt(low)} {'>=' if ok else '<'} {limit}",
        estimate,
        ci,
    )


def _value_checks(c: Candidate, limits: GateLimits) -> list[Check]:
    at = f" at threshold {c.threshold:.4g}"
    sens, spec = c.sensitivity, c.specificity
    return [
        _lower_bound_check("auc", "AUC", c.auc, c.auc_ci, limits.min_auc),
        _lower_bound_check("sensitivity", "sensitivity", sens, c.sensitivity_ci, limits.min_sensitivity, at),
        _lower_bound_check("specificity", "specificity", spec, c.specificity_ci, limits.min_specificity, at),
    ]


def _champion_check(champion: ChampionComparison | None, limits: GateLimits) -> Check:
    margin = -limits.max_auc_drop
    if champion is None:
        return Check("vs_champion", True, None, margin, "no champion yet: absolute limits only")
    delta, ci = champion.auc_delta, champion.delta_ci
    if champion.error is not None or delta is None or ci is None:
        # Fail closed: a champion we cannot score is not evidence that the candidate is as good.
        return Check(
            "vs_champion",
            False,
            None,
            margin,
            f"champion v{champion.version} could not be scored on this test set ({champion.error}); "
            "promote manually with --force if that is expected",
        )
    ok = math.isfinite(ci[0]) and ci[0] >= margin
    return Check(
        "vs_champion",
        ok,
        ci[0],
        margin,
        f"AUC {fmt(champion.candidate_compare_auc)} vs champion v{champion.version} "
        f"{fmt(champion.compare_auc)} on {champion.compared_on}: paired difference {delta:+.4f} "
        f"{fmt_ci(ci, signed=True)}, lower bound {ci[0]:+.4f} {'>=' if ok else '<'} {margin:+.4f} "
        f"(non-inferiority margin {limits.max_auc_drop})",
        delta,
        ci,
    )


def _slice_check(champion: ChampionComparison | None, limits: GateLimits) -> Check:
    """Every subgroup with enough cases: lower bounds of the paired AUC and sensitivity differences
    above ``-max_slice_drop`` (an undefined bound fails: non-inferiority was not shown)."""
    margin = -limits.max_slice_drop
    if champion is None or champion.error is not None:
        return Check("subgroups", True, None, margin, "no champion scored: no per-subgroup comparison")
    judged = [
        s
        for s in champion.slices
        if s.n_positive >= limits.min_slice_positives and s.n_negative >= limits.min_slice_negatives
    ]
    small = [s.name for s in champion.slices if s not in judged]
    too_small = f"; too few cases to judge: {', '.join(small)}" if small else ""
    if not judged:
        detail = "no subgroup with enough cases of both classes to compare" + (
            f" ({', '.join(small)})" if small else ""
        )
        return Check("subgroups", True, None, margin, detail)
    worse: list[str] = []
    lows: list[float] = []
    for s in judged:
        for label, delta, ci in (
            ("AUC", s.auc_delta, s.auc_delta_ci),
            ("sensitivity", s.sensitivity_delta, s.sensitivity_delta_ci),
        ):
            low = ci[0] if ci is not None else float("nan")
            if math.isfinite(low):
                lows.append(low)
            if not (math.isfinite(low) and low >= margin):
                shown = f"{delta:+.4f}" if delta is not None and math.isfinite(delta) else "n/a"
                worse.append(
                    f"{s.name} ({s.n_positive}+{s.n_negative} images): {label} difference {shown} "
                    f"{fmt_ci(ci, signed=True)}, lower bound {fmt(low)} < {margin:+.4f}"
                )
    worst = min(lows) if lows else None
    if worse:
        detail = (
            f"worse than champion v{champion.version} on a subgroup (non-inferiority margin "
            f"{limits.max_slice_drop}, paired on the same images): " + "; ".join(worse) + too_small
        )
        return Check("subgroups", False, worst, margin, detail)
    detail = (
        f"no subgroup worse than champion v{champion.version} beyond the margin {limits.max_slice_drop} "
        f"({len(judged)} subgroup(s) judged on AUC and sensitivity, lowest paired lower bound "
        f"{fmt(worst)}){too_small}"
    )
    return Check("subgroups", True, worst, margin, detail)


def decide(
    candidate: Candidate,
    champion: ChampionComparison | None,
    limits: GateLimits,
    *,
    auto_promote: bool,
) -> Decision:
    """Promote only when every check passes, and only with ``auto_promote``.

    Too few test images hold the candidate (action ``held``: registered, never auto-promoted)
    whatever the other checks say; they are still computed and reported. A candidate that meets
    every limit but is worse than the champion on a subgroup is held too, the subgroup named. Any
    other failed check rejects it. ``champion`` is None when there is no champion (or the candidate
    is the champion itself).
    """
    evidence = _evidence_check(candidate, limits)
    by_slice = _slice_check(champion, limits)
    checks = [evidence, *_value_checks(candidate, limits), _champion_check(champion, limits), by_slice]
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
    failed = [c for c in checks if not c.passed]
    passed = not failed
    if passed:
        action = "promoted" if auto_promote else "recommended"
        reason = "passed: " + "; ".join(c.detail for c in checks)
    elif not evidence.passed and not candidate.leaky:
        action = "held"
        others = [c.detail for c in failed if c is not evidence]
        reason = "held: " + evidence.detail + ("; also failed: " + "; ".join(others) if others else "")
    elif failed == [by_slice] and not candidate.leaky:
        # Every limit met, one subgroup worse: a person weighs it (promote --force with a reason).
        action = "held"
        reason = f"held: {by_slice.detail}; registered as @challenger only"
    else:
        action = "rejected"
        reason = "failed: " + "; ".join(c.detail for c in failed)
    return Decision(passed, action, reason, tuple(checks))
