"""Evaluation mathematics for the binary melanoma classifier (malignant = 1, benign = 0).

Conventions used everywhere in this module (a reviewer should not have to guess):

* ``y_score`` is the model's score for *malignant*; higher means more likely malignant.
* A prediction is **positive (malignant) when ``score >= threshold``** (inclusive).
* Both classes must be present in ``y_true`` for anything that needs a ROC curve
  (:class:`~melanoma_mlops.errors.DataError` otherwise): an evaluation set without a single
  melanoma (or a single benign lesion) cannot say anything about discrimination.
* 0/0 ratios follow scikit-learn's ``zero_division=0``: precision is 0.0 when nothing is predicted
  malignant, NPV is 0.0 when nothing is predicted benign, F1 is 0.0 when precision + sensitivity
  is 0. Sensitivity and specificity are always defined because both classes are present.
* ROC curves include ties as diagonal segments (scikit-learn's ``roc_curve``); areas use the
  trapezoidal rule over those segments, so AUC equals the Mann-Whitney probability with ties
  counted as one half.
* ``pr_auc`` is *average precision* (scikit-learn's ``average_precision_score``: the step-wise sum
  of precision times recall increments, no interpolation), not the trapezoidal area under the PR
  curve, which is optimistic.
* ``pauc_80`` is the ISIC challenge's partial AUC above 80 % TPR (the primary metric of the ISIC
  2024 challenge, scoring code by N. Kurtansky, MSKCC): the raw area of the ROC region with
  TPR >= 0.8, i.e. between the ROC curve and the horizontal line TPR = 0.8. Range [0, 0.2]:
  a perfect classifier scores 0.2, chance 0.02, an inverted classifier 0. It is *not*
  scikit-learn's ``roc_auc_score(max_fpr=...)``, which restricts the FPR axis and applies the
  McClish standardisation. See :func:`partial_auc_above_tpr`.

The ROC core works on *weights* (how many times each row counts), so the point estimates here
and the bootstrap (:mod:`melanoma_mlops.evaluation.bootstrap`) share one implementation; the
threshold rules are in :mod:`melanoma_mlops.evaluation.thresholds`, the figures in
:mod:`melanoma_mlops.evaluation.plots`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from melanoma_mlops.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

#: The partial-AUC region of the ISIC challenge metric: TPR (sensitivity) at or above this.
PAUC_MIN_TPR = 0.80

#: Keys of :func:`binary_metrics`, in the order they are reported.
METRIC_KEYS = (
    "auc_roc",
    "pr_auc",
    "pauc_80",
    "accuracy",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
    "precision",
    "npv",
    "f1",
    "threshold",
    "tp",
    "fp",
    "tn",
    "fn",
    "n",
    "prevalence",
)
#: Keys of :func:`binary_metrics` that are counts or the fixed threshold: no confidence interval.
COUNT_KEYS = ("threshold", "tp", "fp", "tn", "fn", "n")
#: Keys that :func:`melanoma_mlops.evaluation.bootstrap.bootstrap_ci` returns an interval for.
CI_KEYS = tuple(k for k in METRIC_KEYS if k not in COUNT_KEYS)
#: The figures a run is judged and compared by (the console summary, run comparisons), each with its CI.
HEADLINE_KEYS = tuple(k for k in CI_KEYS if k not in ("npv", "prevalence"))


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------


def as_arrays(
    y_true: ArrayLike, y_score: ArrayLike, *, need_both_classes: bool = True
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Validate and convert labels (0/1) and scores (finite floats) of equal length."""
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1:
        raise DataError(f"labels and scores must be 1-D; got shapes {y.shape} and {s.shape}")
    if y.shape[0] != s.shape[0]:
        raise DataError(f"{y.shape[0]} labels but {s.shape[0]} scores: they must pair one to one")
    if y.shape[0] == 0:
        raise DataError("no predictions to evaluate (empty labels and scores)")
    if not np.isin(y, (0, 1)).all():
        bad = np.unique(y[~np.isin(y, (0, 1))])[:5]
        raise DataError(f"labels must be 0 (benign) or 1 (malignant); found {bad.tolist()}")
    if not np.isfinite(s).all():
        raise DataError(f"{int((~np.isfinite(s)).sum())} scores are NaN or infinite: fix the predictions")
    y = y.astype(np.int64)
    if need_both_classes:
        n_pos = int(y.sum())
        if n_pos == 0 or n_pos == y.shape[0]:
            missing = "malignant (1)" if n_pos == 0 else "benign (0)"
            raise DataError(
                f"no {missing} case among {y.shape[0]} labels: ROC-based metrics and thresholds need "
                "both classes; use a larger or stratified evaluation split"
            )
    return y, s


# --------------------------------------------------------------------------------------------
# weighted ROC core (shared by point estimates and the bootstrap)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SortedScores:
    """Scores sorted descending, with the positions that end each block of tied scores."""

    order: NDArray[np.intp]
    y_sorted: NDArray[np.float64]
    block_ends: NDArray[np.intp]


def sort_scores(y: NDArray[np.int64], s: NDArray[np.float64]) -> SortedScores:
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    # Tied scores form one ROC point, so cumulative counts are read only at the end of each tie block.
    block_ends = np.r_[np.flatnonzero(np.diff(s_sorted) != 0), s_sorted.size - 1]
    return SortedScores(order=order, y_sorted=y[order].astype(np.float64), block_ends=block_ends)


def roc_from_weights(
    srt: SortedScores, w_sorted: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Weighted cumulative TP/FP counts at each distinct threshold, descending, with (0, 0) prepended.

    ``w_sorted`` has shape (B, n): B weightings of the rows (bootstrap draw counts, or ones).
    Returns tps, fps of shape (B, k+1) and the totals P, N of shape (B,).
    """
    tps = np.cumsum(w_sorted * srt.y_sorted, axis=1)[:, srt.block_ends]
    fps = np.cumsum(w_sorted * (1.0 - srt.y_sorted), axis=1)[:, srt.block_ends]
    zeros = np.zeros((w_sorted.shape[0], 1))
    tps = np.hstack([zeros, tps])
    fps = np.hstack([zeros, fps])
    return tps, fps, tps[:, -1], fps[:, -1]


def auc_from_counts(tps: NDArray[np.float64], fps: NDArray[np.float64]) -> NDArray[np.float64]:
    """Trapezoidal ROC AUC per row (ties are diagonal segments, i.e. count one half)."""
    tpr = tps / tps[:, -1:]
    fpr = fps / fps[:, -1:]
    return np.sum(np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1]) / 2.0, axis=1)


def ap_from_counts(tps: NDArray[np.float64], fps: NDArray[np.float64]) -> NDArray[np.float64]:
    """Average precision per row: sum over thresholds of (R_k - R_{k-1}) * P_k (sklearn's definition)."""
    predicted = tps + fps
    precision = np.divide(tps, predicted, out=np.zeros_like(tps), where=predicted > 0)
    recall = tps / tps[:, -1:]
    return np.sum(np.diff(recall, axis=1) * precision[:, 1:], axis=1)


def pauc_from_counts(
    tps: NDArray[np.float64], fps: NDArray[np.float64], min_tpr: float = PAUC_MIN_TPR
) -> NDArray[np.float64]:
    """Raw partial area above ``min_tpr`` per row, computed the way the ISIC scoring code does.

    The ISIC code swaps the roles of the classes (benign becomes the positive class, scores are
    negated), so the ROC point (FPR, TPR) becomes (1 - TPR, 1 - FPR) and the band TPR >= min_tpr
    becomes FPR' <= 1 - min_tpr; it then integrates TPR' over FPR' in [0, 1 - min_tpr] with the
    trapezoidal rule, interpolating linearly at the cut. We do the same on the same points.
    """
    max_fpr = 1.0 - min_tpr
    # Flipped curve, in increasing order of x' (reverse of the descending-threshold order).
    x = (1.0 - tps / tps[:, -1:])[:, ::-1]
    y = (1.0 - fps / fps[:, -1:])[:, ::-1]
    xa, xb, ya, yb = x[:, :-1], x[:, 1:], y[:, :-1], y[:, 1:]
    xa_c = np.minimum(xa, max_fpr)
    xb_c = np.minimum(xb, max_fpr)
    width = xb_c - xa_c
    dx = xb - xa
    # Height of the curve at the (possibly clipped) right end of each segment.
    frac = np.divide(xb_c - xa, dx, out=np.ones_like(dx), where=dx > 0)
    yb_c = ya + (yb - ya) * frac
    return np.sum(width * (ya + yb_c) / 2.0, axis=1)


def partial_auc_above_tpr(y_true: ArrayLike, y_score: ArrayLike, min_tpr: float = PAUC_MIN_TPR) -> float:
    """ISIC challenge pAUC: raw area of the ROC region with TPR >= ``min_tpr`` (max ``1 - min_tpr``).

    Equals ``integral over FPR of max(TPR(FPR) - min_tpr, 0)``. Perfect classifier: ``1 - min_tpr``
    (0.2 at 80 %); chance: ``(1 - min_tpr)**2 / 2`` (0.02); inverted: 0. The ISIC 2024 scoring code
    computes it as ``roc_auc_score(1 - y, -score, max_fpr=1 - min_tpr)`` and undoes sklearn's McClish
    standardisation; :func:`pauc_from_counts` integrates the same flipped curve directly.
    """
    if not 0.0 <= min_tpr < 1.0:
        raise ConfigError(f"min_tpr must be in [0, 1); got {min_tpr}")
    y, s = as_arrays(y_true, y_score)
    srt = sort_scores(y, s)
    tps, fps, _, _ = roc_from_weights(srt, np.ones((1, y.size)))
    return float(pauc_from_counts(tps, fps, min_tpr)[0])


# --------------------------------------------------------------------------------------------
# point metrics
# --------------------------------------------------------------------------------------------


def _safe_div(num: NDArray[np.float64], den: NDArray[np.float64]) -> NDArray[np.float64]:
    """num / den with 0/0 (and x/0) defined as 0.0, sklearn's zero_division=0 convention."""
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def threshold_metrics(
    tp: NDArray[np.float64], fp: NDArray[np.float64], tn: NDArray[np.float64], fn: NDArray[np.float64]
) -> dict[str, NDArray[np.float64]]:
    """Confusion-matrix metrics, vectorised over resamples (shared by point and bootstrap)."""
    n = tp + fp + tn + fn
    sens = _safe_div(tp, tp + fn)
    spec = _safe_div(tn, tn + fp)
    prec = _safe_div(tp, tp + fp)
    return {
        "accuracy": _safe_div(tp + tn, n),
        "balanced_accuracy": (sens + spec) / 2.0,
        "sensitivity": sens,
        "specificity": spec,
        "precision": prec,
        "npv": _safe_div(tn, tn + fn),
        "f1": _safe_div(2.0 * tp, 2.0 * tp + fp + fn),  # = 2PR/(P+R), 0 when tp = 0
        "prevalence": _safe_div(tp + fn, n),
    }


def binary_metrics(y_true: ArrayLike, y_score: ArrayLike, threshold: float) -> dict[str, float]:
    """All evaluation numbers at one operating point (positive when ``score >= threshold``).

    Keys: ``METRIC_KEYS``. Ranking metrics (auc_roc, pr_auc, pauc_80) do not depend on the
    threshold; the rest do. Counts (tp, fp, tn, fn, n) are ints. See the module docstring for the
    0/0 conventions and the exact pAUC definition.
    """
    y, s = as_arrays(y_true, y_score)
    pred = s >= threshold
    tp = float(np.sum(pred & (y == 1)))
    fp = float(np.sum(pred & (y == 0)))
    tn = float(np.sum(~pred & (y == 0)))
    fn = float(np.sum(~pred & (y == 1)))
    at_threshold = threshold_metrics(*(np.array([v]) for v in (tp, fp, tn, fn)))
    out: dict[str, Any] = {
        "auc_roc": float(roc_auc_score(y, s)),
        "pr_auc": float(average_precision_score(y, s)),
        "pauc_80": partial_auc_above_tpr(y, s, PAUC_MIN_TPR),
        **{k: float(v[0]) for k, v in at_threshold.items()},
        "threshold": float(threshold),
        "tp": int(tp),
        "fp": int(fp),
        "tn": int(tn),
        "fn": int(fn),
        "n": int(y.size),
    }
    return {k: out[k] for k in METRIC_KEYS}


def confusion(y_true: ArrayLike, y_score: ArrayLike, threshold: float) -> list[list[int]]:
    """2x2 confusion matrix ``[[tn, fp], [fn, tp]]``: rows = true class (benign, malignant),
    columns = predicted class, sklearn's ``confusion_matrix`` layout."""
    y, s = as_arrays(y_true, y_score, need_both_classes=False)
    pred = s >= threshold
    return [
        [int(np.sum(~pred & (y == 0))), int(np.sum(pred & (y == 0)))],
        [int(np.sum(~pred & (y == 1))), int(np.sum(pred & (y == 1)))],
    ]


# --------------------------------------------------------------------------------------------
# calibration
# --------------------------------------------------------------------------------------------


def calibration(y_true: ArrayLike, y_score: ArrayLike, n_bins: int = 10) -> dict[str, Any]:
    """Reliability of the scores as probabilities (scores must lie in [0, 1]).

    Equal-width bins over [0, 1]; bin i is [i/n_bins, (i+1)/n_bins), the last bin includes 1.0.
    ``ece`` = sum over bins of (count / N) * |frac_positive - mean_score| (Naeini et al. 2015;
    Guo et al. 2017), ``mce`` = the largest such gap over non-empty bins, ``brier`` = mean squared
    error of the scores. Per-bin lists (bin_lower, bin_upper, count, mean_score, frac_positive) feed
    the reliability diagram; empty bins have count 0 and NaN mean/fraction (use :func:`json_safe`
    before writing JSON).
    """
    if n_bins < 1:
        raise ConfigError(f"n_bins must be >= 1; got {n_bins}")
    y, s = as_arrays(y_true, y_score, need_both_classes=False)
    if s.min() < 0.0 or s.max() > 1.0:
        raise DataError(
            f"calibration needs probabilities in [0, 1]; scores span [{s.min():.4g}, {s.max():.4g}]"
        )
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.floor(s * n_bins).astype(np.int64), 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    score_sum = np.bincount(idx, weights=s, minlength=n_bins)
    pos_sum = np.bincount(idx, weights=y.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.where(count > 0, score_sum / count, np.nan)
        frac_pos = np.where(count > 0, pos_sum / count, np.nan)
    gap = np.abs(frac_pos - mean_score)
    nonempty = count > 0
    return {
        "ece": float(np.sum(count[nonempty] / y.size * gap[nonempty])),
        "mce": float(gap[nonempty].max()),
        "brier": float(np.mean((s - y) ** 2)),
        "n": int(y.size),
        "n_bins": int(n_bins),
        "bin_lower": edges[:-1].tolist(),
        "bin_upper": edges[1:].tolist(),
        "count": count.astype(int).tolist(),
        "mean_score": mean_score.tolist(),
        "frac_positive": frac_pos.tolist(),
    }


def json_safe(obj: Any) -> Any:
    """Recursively convert numpy scalars/arrays and tuples to plain Python, NaN/inf to None (valid JSON)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [json_safe(v) for v in (obj.tolist() if isinstance(obj, np.ndarray) else obj)]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# --------------------------------------------------------------------------------------------
# curves for KFP and plots
# --------------------------------------------------------------------------------------------


def roc_points(
    y_true: ArrayLike, y_score: ArrayLike, max_points: int = 200
) -> tuple[list[float], list[float], list[float]]:
    """(fpr, tpr, thresholds) for ``ClassificationMetrics.log_roc_curve``: finite, at most ``max_points``.

    sklearn's first threshold is +inf (the (0, 0) point, nothing predicted positive); KFP rejects
    infinities, so it is replaced by the next float above the highest score, which selects the same
    point. Thinning keeps the first and last points and evenly spaced ones in between.
    """
    if max_points < 2:
        raise ConfigError(f"max_points must be >= 2; got {max_points}")
    y, s = as_arrays(y_true, y_score)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=True)
    thr = np.where(np.isfinite(thr), thr, np.nextafter(s.max(), np.inf))
    if fpr.size > max_points:
        keep = np.unique(np.round(np.linspace(0, fpr.size - 1, max_points)).astype(int))
        fpr, tpr, thr = fpr[keep], tpr[keep], thr[keep]
    return fpr.tolist(), tpr.tolist(), thr.tolist()
