"""The evaluation numbers: hand-computed values on tiny arrays, agreement with scikit-learn and with
the ISIC challenge's pAUC scoring code, threshold rules, bootstrap, calibration, curves and plots."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from melanoma_mlops.errors import ConfigError, DataError
from melanoma_mlops.evaluation import bootstrap as mb
from melanoma_mlops.evaluation import metrics as mm
from melanoma_mlops.evaluation import plots as mp
from melanoma_mlops.evaluation import thresholds as mt

# sklearn's documentation example: AUC 0.75, AP 0.8333.
Y4 = np.array([0, 0, 1, 1])
S4 = np.array([0.1, 0.4, 0.35, 0.8])


def isic_pauc(y: np.ndarray, s: np.ndarray, min_tpr: float = 0.80) -> float:
    """The ISIC 2024 challenge scoring code (flip classes, negate scores, undo McClish)."""
    v_gt = np.abs(np.asarray(y) - 1)
    v_pred = -1.0 * np.asarray(s)
    max_fpr = abs(1 - min_tpr)
    scaled = roc_auc_score(v_gt, v_pred, max_fpr=max_fpr)
    return 0.5 * max_fpr**2 + (max_fpr - 0.5 * max_fpr**2) / (1.0 - 0.5) * (scaled - 0.5)


def synthetic(
    n: int, prevalence: float = 0.2, seed: int = 0, sep: float = 1.5
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    y[:2] = [0, 1]
    s = 1.0 / (1.0 + np.exp(-(rng.normal(size=n) + sep * y - 1.5)))
    return y, s


# ---------------------------------------------------------------- pAUC


def test_pauc_hand_computed_vertical_step() -> None:
    # ROC: (0,0) (0,.5) (.5,.5) (.5,1) (1,1): TPR >= .8 only for FPR in [.5, 1] -> 0.5 * 0.2.
    assert mm.partial_auc_above_tpr(Y4, S4) == pytest.approx(0.1)


def test_pauc_hand_computed_tie_crossing_the_cut() -> None:
    # A tie of 2 malignant + 1 benign at 0.5 makes the diagonal (0, .6) -> (.2, 1), crossing TPR .8 at
    # FPR .1: triangle 0.5 * 0.1 * 0.2 = 0.01 plus rectangle 0.8 * 0.2 = 0.16.
    y = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    s = np.array([0.9, 0.8, 0.7, 0.5, 0.5, 0.5, 0.3, 0.2, 0.1, 0.05])
    assert mm.partial_auc_above_tpr(y, s) == pytest.approx(0.17)
    assert mm.partial_auc_above_tpr(y, s) == pytest.approx(isic_pauc(y, s))


def test_pauc_edge_cases() -> None:
    y = np.array([0] * 50 + [1] * 50)
    s = np.linspace(0, 1, 100)
    assert mm.partial_auc_above_tpr(y, s) == pytest.approx(0.2)  # perfect
    assert mm.partial_auc_above_tpr(y, -s) == pytest.approx(0.0)  # inverted
    assert mm.partial_auc_above_tpr(y, np.zeros(100)) == pytest.approx(0.02)  # all tied = chance diagonal
    rng = np.random.default_rng(0)
    yr = rng.integers(0, 2, 20000)
    assert mm.partial_auc_above_tpr(yr, rng.random(20000)) == pytest.approx(0.02, abs=0.004)  # random


def test_pauc_matches_isic_scoring_code_with_ties() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        n = int(rng.integers(6, 200))
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        s = np.round(rng.random(n) + y * rng.random(), int(rng.integers(1, 4)))  # coarse -> many ties
        assert mm.partial_auc_above_tpr(y, s) == pytest.approx(isic_pauc(y, s), abs=1e-12)


def test_pauc_is_not_sklearn_max_fpr() -> None:
    y, s = synthetic(500)
    assert mm.partial_auc_above_tpr(y, s) != pytest.approx(roc_auc_score(y, s, max_fpr=0.2), abs=1e-3)


# ---------------------------------------------------------------- binary_metrics / confusion


def test_binary_metrics_hand_computed_and_inclusive_threshold() -> None:
    m = mm.binary_metrics(Y4, S4, 0.35)  # 0.35 itself is predicted malignant
    assert list(m) == list(mm.METRIC_KEYS)
    assert (m["tp"], m["fp"], m["tn"], m["fn"], m["n"]) == (2, 1, 1, 0, 4)
    assert m["auc_roc"] == pytest.approx(0.75)
    assert m["pr_auc"] == pytest.approx(0.8333333333)
    assert m["pauc_80"] == pytest.approx(0.1)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["sensitivity"] == pytest.approx(1.0)
    assert m["specificity"] == pytest.approx(0.5)
    assert m["balanced_accuracy"] == pytest.approx(0.75)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["npv"] == pytest.approx(1.0)
    assert m["f1"] == pytest.approx(0.8)
    assert m["prevalence"] == pytest.approx(0.5)
    assert m["threshold"] == 0.35
    assert mm.confusion(Y4, S4, 0.35) == [[1, 1], [0, 2]]


def test_zero_division_is_zero() -> None:
    none_positive = mm.binary_metrics(Y4, S4, 0.95)
    assert none_positive["precision"] == 0.0
    assert none_positive["f1"] == 0.0
    assert none_positive["npv"] == pytest.approx(0.5)
    all_positive = mm.binary_metrics(Y4, S4, 0.0)
    assert all_positive["npv"] == 0.0
    assert all_positive["sensitivity"] == 1.0
    assert all_positive["specificity"] == 0.0


def test_binary_metrics_match_sklearn() -> None:
    y, s = synthetic(777, seed=3)
    m = mm.binary_metrics(y, s, 0.4)
    pred = (s >= 0.4).astype(int)
    assert m["auc_roc"] == pytest.approx(roc_auc_score(y, s))
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, s))
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["sensitivity"] == pytest.approx(recall_score(y, pred))
    assert m["specificity"] == pytest.approx(recall_score(y, pred, pos_label=0))
    assert m["precision"] == pytest.approx(precision_score(y, pred, zero_division=0))
    assert m["npv"] == pytest.approx(precision_score(y, pred, pos_label=0, zero_division=0))
    assert m["f1"] == pytest.approx(f1_score(y, pred, zero_division=0))
    assert mm.confusion(y, s, 0.4) == confusion_matrix(y, pred).tolist()


@pytest.mark.parametrize(
    ("y", "s", "match"),
    [
        ([0, 0, 0], [0.1, 0.2, 0.3], "no malignant"),
        ([1, 1], [0.1, 0.2], "no benign"),
        ([0, 1, 2], [0.1, 0.2, 0.3], "0 .benign. or 1"),
        ([0, 1], [0.1, float("nan")], "NaN"),
        ([0, 1, 1], [0.1, 0.2], "pair"),
        ([], [], "empty"),
    ],
)
def test_bad_inputs_raise_data_error(y: list, s: list, match: str) -> None:
    with pytest.raises(DataError, match=match):
        mm.binary_metrics(y, s, 0.5)


# ---------------------------------------------------------------- thresholds


def test_sensitivity_rule_hand_computed() -> None:
    assert mt.choose_threshold(Y4, S4, "sensitivity", target_sensitivity=0.5) == 0.8
    assert mt.choose_threshold(Y4, S4, "sensitivity", target_sensitivity=0.9) == 0.35


@pytest.mark.parametrize("target", [0.5, 0.8, 0.9, 0.95, 1.0])
def test_sensitivity_rule_meets_target_and_is_highest(target: float) -> None:
    y, s = synthetic(1000, seed=4)
    t = mt.choose_threshold(y, s, "sensitivity", target_sensitivity=target)
    assert mm.binary_metrics(y, s, t)["sensitivity"] >= target
    higher = s[s > t]
    if higher.size:  # the next observed score up falls below the target: t is the highest that works
        assert mm.binary_metrics(y, s, higher.min())["sensitivity"] < target


def test_sensitivity_rule_exact_fraction_is_not_lost_to_float_error() -> None:
    y = np.array([1] * 10 + [0] * 10)
    s = np.r_[np.linspace(0.5, 0.95, 10), np.linspace(0.0, 0.45, 10)]
    t = mt.choose_threshold(y, s, "sensitivity", target_sensitivity=0.9)  # 9 of 10 = 0.9 exactly
    assert t == pytest.approx(0.55)


def test_youden_hand_computed_optimum() -> None:
    # benign 0.1 .2 .3 .5 .7, malignant .4 .6 .8: J = .33 .13 .47 .27 .60 .40 ... -> max .6 at 0.4
    y = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.5, 0.7, 0.4, 0.6, 0.8])
    assert mt.choose_threshold(y, s, "youden") == 0.4


def test_youden_ties_go_to_higher_sensitivity() -> None:
    # J = 0.5 at both 0.8 (sens .5) and 0.35 (sens 1): the lower threshold is chosen.
    assert mt.choose_threshold(Y4, S4, "youden") == 0.35


def test_fixed_rule_and_errors() -> None:
    assert mt.choose_threshold(Y4, S4, "fixed", fixed_threshold=0.3) == 0.3
    with pytest.raises(ConfigError, match="not one of"):
        mt.choose_threshold(Y4, S4, "f1")
    with pytest.raises(DataError, match="no malignant"):
        mt.choose_threshold([0, 0], [0.1, 0.2], "sensitivity")
    with pytest.raises(DataError, match="no benign"):
        mt.choose_threshold([1, 1], [0.1, 0.2], "youden")


# ---------------------------------------------------------------- bootstrap


def test_weighted_core_equals_sklearn_on_an_explicit_resample() -> None:
    """The bootstrap evaluates resamples as draw-count weights; that must equal recomputing on the rows."""
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 150)
    s = np.round(rng.random(150) + 0.5 * y, 2)
    for _ in range(20):
        idx = rng.integers(0, 150, 150)
        srt = mm.sort_scores(y, s)
        w = np.bincount(idx, minlength=150).astype(float)[srt.order][None, :]
        got = mb.metrics_from_weights(srt, w, s[srt.order] >= 0.7)
        want = mm.binary_metrics(y[idx], s[idx], 0.7)
        for k in mm.CI_KEYS:
            assert got[k][0] == pytest.approx(want[k], abs=1e-12), k
        assert got["auc_roc"][0] == pytest.approx(roc_auc_score(y[idx], s[idx]), abs=1e-12)
        assert got["pr_auc"][0] == pytest.approx(average_precision_score(y[idx], s[idx]), abs=1e-12)


def test_bootstrap_ci_covers_point_estimate_and_is_reproducible() -> None:
    y, s = synthetic(600, seed=6)
    point = mm.binary_metrics(y, s, 0.4)
    ci = mb.bootstrap_ci(y, s, 0.4, n_boot=300, seed=1)
    assert set(ci) == set(mm.CI_KEYS)
    for k, (lo, hi) in ci.items():
        assert lo <= point[k] <= hi, k
        assert lo < hi, k
    assert ci == mb.bootstrap_ci(y, s, 0.4, n_boot=300, seed=1)


def test_bootstrap_ci_narrows_with_more_data() -> None:
    small = mb.bootstrap_ci(*synthetic(200, seed=7), 0.4, n_boot=300)
    large = mb.bootstrap_ci(*synthetic(5000, seed=7), 0.4, n_boot=300)
    for k in ("auc_roc", "pauc_80", "sensitivity", "specificity"):
        assert large[k][1] - large[k][0] < 0.6 * (small[k][1] - small[k][0]), k


def test_grouped_bootstrap_is_wider_with_correlated_groups() -> None:
    # 100 lesions x 10 near-identical images: the effective sample is 100, not 1000.
    rng = np.random.default_rng(8)
    lesion_y = (rng.random(100) < 0.3).astype(int)
    lesion_y[:2] = [0, 1]
    lesion_s = 1 / (1 + np.exp(-(rng.normal(size=100) + 1.5 * lesion_y - 1)))
    groups = np.repeat(np.arange(100), 10)
    y = lesion_y[groups]
    s = np.clip(lesion_s[groups] + rng.normal(0, 0.01, 1000), 0, 1)
    rows = mb.bootstrap(y, s, 0.4, n_boot=400)
    clusters = mb.bootstrap(y, s, 0.4, groups=[f"L{g}" for g in groups], n_boot=400)
    assert (rows.unit, rows.n_units, clusters.unit, clusters.n_units) == ("row", 1000, "group", 100)
    for k in ("auc_roc", "sensitivity", "specificity"):
        width_rows = rows.ci[k][1] - rows.ci[k][0]
        width_groups = clusters.ci[k][1] - clusters.ci[k][0]
        assert width_groups > 2 * width_rows, k


def test_bootstrap_redraws_resamples_lacking_a_class() -> None:
    y = np.array([1] + [0] * 9)
    s = np.linspace(1, 0, 10)
    res = mb.bootstrap(y, s, 0.5, n_boot=200, seed=0)
    assert res.n_redrawn > 0  # P(no malignant) = 0.9**10 = 0.35 per resample
    assert all(v.size == 200 for v in res.samples.values())


def test_bootstrap_bad_groups() -> None:
    with pytest.raises(DataError, match="one id per prediction"):
        mb.bootstrap_ci(Y4, S4, 0.5, groups=[1, 2])


def test_bootstrap_is_fast_enough() -> None:
    y, s = synthetic(3000, prevalence=0.1, seed=9)
    start = time.perf_counter()
    mb.bootstrap_ci(y, s, 0.3, groups=np.arange(3000) // 3, n_boot=1000)
    assert time.perf_counter() - start < 10.0  # ~1 s here; generous for a shared 2-core machine


# ---------------------------------------------------------------- calibration


def test_calibration_hand_computed() -> None:
    cal = mm.calibration([0, 1, 0, 1, 1], [0.05, 0.15, 0.15, 0.95, 1.0], n_bins=10)
    # bins: 0 -> (.05, 0); 1 -> (.15, .5); 9 -> (.975, 1) incl. score 1.0
    assert cal["count"] == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2]
    assert cal["ece"] == pytest.approx((0.05 + 2 * 0.35 + 2 * 0.025) / 5)
    assert cal["mce"] == pytest.approx(0.35)
    assert cal["bin_lower"][0] == 0.0 and cal["bin_upper"][-1] == 1.0
    assert math.isnan(cal["mean_score"][5]) and math.isnan(cal["frac_positive"][5])


def test_ece_small_when_calibrated_large_when_not() -> None:
    rng = np.random.default_rng(10)
    p = rng.random(20000)
    y = (rng.random(20000) < p).astype(int)
    assert mm.calibration(y, p)["ece"] < 0.02
    bad = mm.calibration(y, p**3)  # systematically under-confident about melanoma
    assert bad["ece"] > 0.15
    assert bad["mce"] >= bad["ece"]


def test_calibration_rejects_non_probabilities() -> None:
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        mm.calibration([0, 1], [-0.2, 0.5])


def test_json_safe_makes_valid_json() -> None:
    cal = mm.calibration([0, 1], [0.05, 0.95])
    text = json.dumps(mm.json_safe(cal), allow_nan=False)
    assert json.loads(text)["mean_score"][5] is None
    assert mm.json_safe({"a": (np.float32(1.5), np.int64(2))}) == {"a": [1.5, 2]}


# ---------------------------------------------------------------- curves and plots


def test_roc_points_finite_thinned_and_exact_when_small() -> None:
    y, s = synthetic(3000, seed=11)
    fpr, tpr, thr = mm.roc_points(y, s, max_points=50)
    assert len(fpr) == len(tpr) == len(thr) <= 50
    assert all(math.isfinite(t) for t in thr)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert thr[0] > s.max()  # the (0, 0) point: nothing predicted malignant
    assert all(isinstance(v, float) for v in fpr + tpr + thr)
    f2, t2, _ = mm.roc_points(Y4, S4)
    sk_fpr, sk_tpr, _ = roc_curve(Y4, S4)
    assert f2 == sk_fpr.tolist() and t2 == sk_tpr.tolist()


def test_plots_write_png_without_pyplot_state(tmp_path) -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    y, s = synthetic(300, seed=12)
    paths = [
        mp.plot_roc(y, s, 0.4, tmp_path / "roc.png"),
        mp.plot_pr(y, s, 0.4, tmp_path / "pr.png"),
        mp.plot_confusion(mm.confusion(y, s, 0.4), tmp_path / "cm.png"),
        mp.plot_reliability(mm.json_safe(mm.calibration(y, s, n_bins=15)), tmp_path / "sub" / "rel.png"),
    ]
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, p
    assert plt.get_fignums() == before
    with pytest.raises(DataError, match="2x2"):
        mp.plot_confusion([[1, 2, 3]], tmp_path / "bad.png")
