"""The promotion gate's decision table, on numbers alone: no MLflow, no TensorFlow, milliseconds."""

from __future__ import annotations

import dataclasses

import pytest

from melanoma_mlops.errors import ConfigError
from melanoma_mlops.registry.gate import Candidate, ChampionComparison, GateLimits, SliceComparison, decide
from melanoma_mlops.registry.report import fmt_ci

LIMITS = GateLimits(
    min_auc=0.80,
    min_sensitivity=0.85,
    min_specificity=0.50,
    max_auc_drop=0.02,
    min_test_positives=30,
    min_test_negatives=30,
)
GOOD = Candidate(
    "2",
    auc=0.95,
    sensitivity=0.93,
    specificity=0.80,
    threshold=0.4,
    auc_ci=(0.92, 0.97),
    sensitivity_ci=(0.88, 0.97),
    specificity_ci=(0.75, 0.85),
    n_positive=120,
    n_negative=480,
)


def test_no_champion_and_within_limits_promotes() -> None:
    d = decide(GOOD, None, LIMITS, auto_promote=True)
    assert d.passed and d.action == "promoted" and d.promote
    assert [c.name for c in d.checks] == [
        "test_size",
        "auc",
        "sensitivity",
        "specificity",
        "vs_champion",
        "subgroups",
    ]
    assert "no champion yet" in d.reason


def test_passing_without_auto_promote_only_recommends() -> None:
    d = decide(GOOD, None, LIMITS, auto_promote=False)
    assert d.passed and d.action == "recommended" and not d.promote


@pytest.mark.parametrize(
    ("changes", "failed"),
    [
        ({"auc": 0.85, "auc_ci": (0.78, 0.91)}, "auc"),
        ({"sensitivity": 0.90, "sensitivity_ci": (0.84, 0.95)}, "sensitivity"),
        ({"specificity": 0.55, "specificity_ci": (0.45, 0.62)}, "specificity"),
    ],
)
def test_a_lower_bound_under_its_limit_rejects_even_when_the_estimate_clears_it(
    changes: dict, failed: str
) -> None:
    candidate = dataclasses.replace(GOOD, **changes)
    d = decide(candidate, None, LIMITS, auto_promote=True)
    assert not d.passed and d.action == "rejected"
    (check,) = [c for c in d.checks if not c.passed]
    assert check.name == failed
    assert check.estimate == changes[failed] and check.interval == changes[f"{failed}_ci"]
    assert check.value == changes[f"{failed}_ci"][0]  # the lower bound is what was compared
    assert d.reason.startswith("failed: ")
    assert f"{fmt_ci(changes[f'{failed}_ci'])}: lower bound" in d.reason


def test_the_interval_used_is_in_every_value_check() -> None:
    d = decide(GOOD, None, LIMITS, auto_promote=True)
    auc = next(c for c in d.checks if c.name == "auc")
    assert auc.interval == (0.92, 0.97) and auc.value == 0.92 and auc.limit == 0.80
    assert "AUC 0.9500 [95% CI 0.9200, 0.9700]: lower bound 0.9200 >= 0.8" in auc.detail


def test_an_undefined_interval_never_passes() -> None:
    candidate = dataclasses.replace(GOOD, auc_ci=(float("nan"), float("nan")))
    d = decide(candidate, None, LIMITS, auto_promote=True)
    assert d.action == "rejected" and [c.name for c in d.checks if not c.passed] == ["auc"]


def test_a_tiny_test_set_is_held_however_good_the_figures() -> None:
    """The issue's case: 11 test images (3 malignant) once promoted a model with specificity 0.111."""
    tiny = dataclasses.replace(
        GOOD,
        auc=1.0,
        sensitivity=1.0,
        specificity=0.111,
        auc_ci=(1.0, 1.0),
        sensitivity_ci=(1.0, 1.0),
        specificity_ci=(0.0, 0.33),
        n_positive=3,
        n_negative=8,
    )
    d = decide(tiny, None, LIMITS, auto_promote=True)
    assert not d.passed and not d.promote and d.action == "held"
    assert d.reason.startswith("held: too few test images to promote automatically (3 malignant < 30, ")
    assert "8 benign < 30" in d.reason and "registered as @challenger only" in d.reason
    assert "also failed: specificity 0.1110" in d.reason


def test_enough_of_one_class_is_not_enough() -> None:
    d = decide(dataclasses.replace(GOOD, n_negative=29), None, LIMITS, auto_promote=True)
    assert d.action == "held" and "29 benign < 30" in d.reason and "malignant <" not in d.reason


def test_significantly_worse_than_the_champion_on_the_same_images_rejects() -> None:
    champion = ChampionComparison(
        "1",
        compare_auc=0.97,
        candidate_compare_auc=0.95,
        delta_ci=(-0.035, -0.006),
        compared_on="all 600 test images",
    )
    d = decide(GOOD, champion, LIMITS, auto_promote=True)
    assert d.action == "rejected"
    (check,) = [c for c in d.checks if not c.passed]
    assert check.name == "vs_champion" and check.value == pytest.approx(-0.035)
    assert check.estimate == pytest.approx(-0.02) and check.interval == (-0.035, -0.006)
    assert "vs champion v1" in check.detail and "all 600 test images" in check.detail
    assert "[95% CI -0.0350, -0.0060]" in check.detail


def test_a_point_estimate_within_the_old_margin_is_not_enough() -> None:
    """-0.01 passed the old fixed 0.02 margin; here the interval decides, and it reaches -0.06."""
    champion = ChampionComparison(
        "1", compare_auc=0.96, candidate_compare_auc=0.95, delta_ci=(-0.06, 0.04), compared_on="x"
    )
    assert decide(GOOD, champion, LIMITS, auto_promote=True).action == "rejected"


def test_non_inferior_to_the_champion_promotes() -> None:
    champion = ChampionComparison(
        "1", compare_auc=0.94, candidate_compare_auc=0.95, delta_ci=(-0.012, 0.03), compared_on="x"
    )
    assert decide(GOOD, champion, LIMITS, auto_promote=True).action == "promoted"


def test_a_champion_that_cannot_be_scored_fails_closed() -> None:
    champion = ChampionComparison("1", error="OSError: artifact missing")
    d = decide(GOOD, champion, LIMITS, auto_promote=True)
    assert d.action == "rejected" and "could not be scored" in d.reason


def test_a_leaky_candidate_is_rejected_whatever_its_figures() -> None:
    d = decide(dataclasses.replace(GOOD, leaky=True, n_positive=2), None, LIMITS, auto_promote=True)
    assert d.action == "rejected"
    assert d.checks[0].name == "lineage" and "LEAKY (negative control)" in d.reason


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("min_auc", 1.5, r"min_auc 1\.5"), ("min_specificity", -0.1, "min_specificity"),
     ("min_test_positives", -1, "min_test_positives -1 is negative"),
     ("max_slice_drop", 2.0, "max_slice_drop 2.0"),
     ("min_slice_negatives", -3, "min_slice_negatives -3 is negative")],
)  # fmt: skip
def test_limits_outside_their_range_are_refused(field: str, value: float, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(LIMITS, **{field: value})


# ------------------------------------------------------------------------------ by subgroup
def _slice(name: str, auc: tuple[float, float], sens: tuple[float, float], pos: int = 40, neg: int = 160):
    return SliceComparison(name, pos, neg, sum(auc) / 2, auc, sum(sens) / 2, sens)


FINE = (-0.03, 0.04)


def _champion(*slices: SliceComparison) -> ChampionComparison:
    """A champion the candidate matches on the whole test set (paired AUC difference near 0)."""
    return ChampionComparison(
        "1",
        compare_auc=0.95,
        candidate_compare_auc=0.951,
        delta_ci=(-0.012, 0.015),
        compared_on="all 600 test images",
        slices=slices,
    )


def test_a_challenger_worse_on_one_subgroup_only_is_held_with_that_subgroup_named() -> None:
    champion = _champion(
        _slice("sex=female", FINE, FINE),
        _slice("sex=male", FINE, FINE),
        _slice("anatom_site=head/neck", (-0.21, -0.06), FINE, pos=35, neg=60),
        _slice("anatom_site=posterior torso", FINE, FINE),
    )
    d = decide(GOOD, champion, LIMITS, auto_promote=True)
    assert d.action == "held" and not d.passed and not d.promote
    (failed,) = [c for c in d.checks if not c.passed]
    assert failed.name == "subgroups" and failed.value == pytest.approx(-0.21) and failed.limit == -0.05
    assert d.reason.startswith("held: worse than champion v1 on a subgroup")
    assert (
        "anatom_site=head/neck (35+60 images): AUC difference -0.1350 [95% CI -0.2100, -0.0600]" in d.reason
    )
    assert "lower bound -0.2100 < -0.0500" in d.reason and "registered as @challenger only" in d.reason
    assert "sex=" not in d.reason and "posterior torso" not in d.reason  # only the failing one is named


def test_a_drop_in_sensitivity_on_a_subgroup_holds_too() -> None:
    champion = _champion(_slice("age_band=>=70", FINE, (-0.30, -0.02)), _slice("age_band=<30", FINE, FINE))
    d = decide(GOOD, champion, LIMITS, auto_promote=True)
    assert d.action == "held" and "age_band=>=70" in d.reason and "sensitivity difference" in d.reason


def test_subgroups_within_the_margin_promote_and_say_how_many_were_judged() -> None:
    champion = _champion(
        _slice("sex=female", (-0.049, 0.02), (-0.05, 0.1)),
        _slice("sex=male", FINE, FINE),
        _slice("anatom_site=palms/soles", (-0.5, 0.2), (-0.6, 0.3), pos=2, neg=9),
    )
    d = decide(GOOD, champion, LIMITS, auto_promote=True)
    assert d.action == "promoted"
    check = next(c for c in d.checks if c.name == "subgroups")
    assert check.passed and check.value == pytest.approx(-0.05)
    assert (
        "2 subgroup(s) judged" in check.detail
        and "too few cases to judge: anatom_site=palms/soles" in check.detail
    )


def test_a_subgroup_too_small_to_judge_never_holds_whatever_its_difference() -> None:
    small = _slice("anatom_site=palms/soles", (-0.9, -0.5), (-1.0, -0.8), pos=LIMITS.min_slice_positives - 1)
    d = decide(GOOD, _champion(small), LIMITS, auto_promote=True)
    assert d.action == "promoted"
    assert "no subgroup with enough cases" in next(c for c in d.checks if c.name == "subgroups").detail


def test_a_subgroup_without_an_interval_fails_closed() -> None:
    nan = (float("nan"), float("nan"))
    d = decide(GOOD, _champion(_slice("sex=female", nan, FINE)), LIMITS, auto_promote=True)
    assert d.action == "held" and "sex=female" in d.reason and "lower bound n/a" in d.reason


def test_a_failed_limit_and_a_worse_subgroup_reject_naming_both() -> None:
    weak = dataclasses.replace(GOOD, specificity=0.5, specificity_ci=(0.40, 0.60))
    d = decide(weak, _champion(_slice("sex=male", (-0.2, -0.1), FINE)), LIMITS, auto_promote=True)
    assert d.action == "rejected" and "specificity" in d.reason and "sex=male" in d.reason


def test_too_few_test_images_hold_first_and_name_the_subgroup_among_the_failures() -> None:
    tiny = dataclasses.replace(GOOD, n_positive=12)
    d = decide(tiny, _champion(_slice("sex=male", (-0.2, -0.1), FINE)), LIMITS, auto_promote=True)
    assert d.reason.startswith("held: too few test images") and "also failed: worse than champion" in d.reason


def test_without_a_champion_there_is_no_subgroup_comparison() -> None:
    check = next(c for c in decide(GOOD, None, LIMITS, auto_promote=True).checks if c.name == "subgroups")
    assert check.passed and check.value is None and "no champion" in check.detail


def test_the_reasons_say_the_task_class_names() -> None:
    melanoma = dataclasses.replace(GOOD, n_positive=12, class_names=("not melanoma", "melanoma"))
    d = decide(melanoma, None, LIMITS, auto_promote=True)
    assert "12 melanoma < 30" in d.reason and "malignant" not in d.reason
