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

Bootstrap confidence intervals resample whole groups (lesion / patient) when group ids are given,
because images of the same lesion are not independent; resampling rows then would understate the
uncertainty. All bootstrap metrics are computed from resampling *weights* (how many times each row
is drawn), which is exactly equivalent to recomputing the metric on the resampled rows but lets
1000 resamples be evaluated as a few array operations.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from .config import THRESHOLD_RULES  # one source for the CLI, the pipeline and this module
from .errors import ConfigError, DataError

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
#: Keys that :func:`bootstrap_ci` returns an interval for.
CI_KEYS = tuple(k for k in METRIC_KEYS if k not in COUNT_KEYS)

# Resamples are processed in chunks of at most this many (resample x row) cells, which bounds
# memory at a few tens of MB whatever n_boot and the data size are.
_CHUNK_CELLS = 2_000_000


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------


def _as_arrays(
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
class _Sorted:
    """Scores sorted descending, with the positions that end each block of tied scores."""

    order: NDArray[np.intp]
    y_sorted: NDArray[np.float64]
    block_ends: NDArray[np.intp]


def _sort(y: NDArray[np.int64], s: NDArray[np.float64]) -> _Sorted:
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    # Tied scores form one ROC point, so cumulative counts are read only at the end of each tie block.
    block_ends = np.r_[np.flatnonzero(np.diff(s_sorted) != 0), s_sorted.size - 1]
    return _Sorted(order=order, y_sorted=y[order].astype(np.float64), block_ends=block_ends)


def _roc_from_weights(
    srt: _Sorted, w_sorted: NDArray[np.float64]
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


def _auc_from_counts(tps: NDArray[np.float64], fps: NDArray[np.float64]) -> NDArray[np.float64]:
    """Trapezoidal ROC AUC per row (ties are diagonal segments, i.e. count one half)."""
    tpr = tps / tps[:, -1:]
    fpr = fps / fps[:, -1:]
    return np.sum(np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1]) / 2.0, axis=1)


def _ap_from_counts(tps: NDArray[np.float64], fps: NDArray[np.float64]) -> NDArray[np.float64]:
    """Average precision per row: sum over thresholds of (R_k - R_{k-1}) * P_k (sklearn's definition)."""
    predicted = tps + fps
    precision = np.divide(tps, predicted, out=np.zeros_like(tps), where=predicted > 0)
    recall = tps / tps[:, -1:]
    return np.sum(np.diff(recall, axis=1) * precision[:, 1:], axis=1)


def _pauc_from_counts(
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
    standardisation; :func:`_pauc_from_counts` integrates the same flipped curve directly.
    """
    if not 0.0 <= min_tpr < 1.0:
        raise ConfigError(f"min_tpr must be in [0, 1); got {min_tpr}")
    y, s = _as_arrays(y_true, y_score)
    srt = _sort(y, s)
    tps, fps, _, _ = _roc_from_weights(srt, np.ones((1, y.size)))
    return float(_pauc_from_counts(tps, fps, min_tpr)[0])


# --------------------------------------------------------------------------------------------
# threshold choice
# --------------------------------------------------------------------------------------------


def choose_threshold(
    y_true: ArrayLike,
    y_score: ArrayLike,
    rule: str = "sensitivity",
    target_sensitivity: float = 0.90,
    fixed_threshold: float = 0.5,
) -> float:
    """Choose the decision threshold on validation data (positive when ``score >= threshold``).

    Rules:

    * ``"sensitivity"``: the **highest** threshold whose sensitivity on these labels is
      ``>= target_sensitivity``. Because the FPR can only fall as the threshold rises, this is the
      operating point with the lowest false-positive rate (highest specificity) that still reaches
      the target. Candidates are the observed scores, so the result is the score of the
      ``ceil(target * P)``-th highest-scoring malignant case (ties included); any threshold between
      it and the next lower observed score gives the same validation confusion matrix, and we take
      the highest. The target is met on *this* data only; on new data the sensitivity is an estimate.
    * ``"youden"``: maximises Youden's J = TPR - FPR (Youden 1950) over the observed scores; ties are
      broken towards the **lower** threshold, i.e. the higher sensitivity, because a missed melanoma
      costs more than an extra biopsy.
    * ``"fixed"``: returns ``fixed_threshold`` without looking at the data (labels still checked).
    """
    if rule not in THRESHOLD_RULES:
        raise ConfigError(f"threshold rule {rule!r} is not one of {', '.join(THRESHOLD_RULES)}")
    if rule == "fixed":
        _as_arrays(y_true, y_score, need_both_classes=False)
        return float(fixed_threshold)
    y, s = _as_arrays(y_true, y_score)
    srt = _sort(y, s)
    tps, fps, p, n = _roc_from_weights(srt, np.ones((1, y.size)))
    # Drop the prepended (0, 0) point: its threshold would be +inf (nothing predicted positive).
    tpr = (tps / p[:, None])[0, 1:]
    fpr = (fps / n[:, None])[0, 1:]
    thresholds = s[srt.order][srt.block_ends]  # descending, one per distinct score
    if rule == "sensitivity":
        if not 0.0 < target_sensitivity <= 1.0:
            raise ConfigError(f"target sensitivity must be in (0, 1]; got {target_sensitivity}")
        # Guard against 0.9 * 10 = 8.999999999999998-style float error in the comparison.
        reaching = np.flatnonzero(tpr >= target_sensitivity - 1e-12)
        idx = int(reaching[0])  # thresholds descend, so the first hit is the highest threshold
        logger.info(
            "threshold %.6g reaches sensitivity %.4f (target %.4f) at FPR %.4f on %d cases",
            thresholds[idx],
            tpr[idx],
            target_sensitivity,
            fpr[idx],
            y.size,
        )
        return float(thresholds[idx])
    j = tpr - fpr
    idx = int(np.flatnonzero(j == j.max())[-1])  # last = lowest threshold among the maximisers
    logger.info(
        "Youden threshold %.6g: J=%.4f (TPR %.4f, FPR %.4f)", thresholds[idx], j[idx], tpr[idx], fpr[idx]
    )
    return float(thresholds[idx])


# --------------------------------------------------------------------------------------------
# point metrics
# --------------------------------------------------------------------------------------------


def _safe_div(num: NDArray[np.float64], den: NDArray[np.float64]) -> NDArray[np.float64]:
    """num / den with 0/0 (and x/0) defined as 0.0, sklearn's zero_division=0 convention."""
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def _threshold_metrics(
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
    y, s = _as_arrays(y_true, y_score)
    pred = s >= threshold
    tp = float(np.sum(pred & (y == 1)))
    fp = float(np.sum(pred & (y == 0)))
    tn = float(np.sum(~pred & (y == 0)))
    fn = float(np.sum(~pred & (y == 1)))
    at_threshold = _threshold_metrics(*(np.array([v]) for v in (tp, fp, tn, fn)))
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
    y, s = _as_arrays(y_true, y_score, need_both_classes=False)
    pred = s >= threshold
    return [
        [int(np.sum(~pred & (y == 0))), int(np.sum(pred & (y == 0)))],
        [int(np.sum(~pred & (y == 1))), int(np.sum(pred & (y == 1)))],
    ]


# --------------------------------------------------------------------------------------------
# bootstrap
# --------------------------------------------------------------------------------------------


@dataclass
class BootstrapResult:
    """Everything the bootstrap produced, for audits: the CIs, and how many draws were redrawn."""

    ci: dict[str, tuple[float, float]]
    n_boot: int
    n_redrawn: int  # resamples discarded because they lacked a class, and drawn again
    unit: str  # "group" (cluster bootstrap) or "row"
    n_units: int
    alpha: float
    samples: dict[str, NDArray[np.float64]] = field(repr=False)


def _group_index(groups: ArrayLike, n: int) -> tuple[NDArray[np.intp], int]:
    g = np.asarray(groups)
    if g.ndim != 1 or g.shape[0] != n:
        raise DataError(f"groups must be 1-D with one id per prediction ({n}); got shape {g.shape}")
    if g.dtype.kind in "fc" and np.isnan(g.astype(np.float64)).any():
        raise DataError("groups contain NaN: every prediction needs a group id (lesion/patient)")
    _, inverse = np.unique(g.astype(str) if g.dtype.kind == "O" else g, return_inverse=True)
    inverse = inverse.ravel()
    return inverse, int(inverse.max()) + 1


def _draw_weights(rng: np.random.Generator, b: int, n_units: int) -> NDArray[np.float64]:
    """(b, n_units) draw counts: each row is n_units draws with replacement (multinomial)."""
    idx = rng.integers(0, n_units, size=(b, n_units)) + (np.arange(b) * n_units)[:, None]
    return np.bincount(idx.ravel(), minlength=b * n_units).reshape(b, n_units).astype(np.float64)


def _metrics_from_weights(
    srt: _Sorted, w: NDArray[np.float64], pred_sorted: NDArray[np.bool_]
) -> dict[str, NDArray[np.float64]]:
    """Every CI metric for each row of the (B, n) row-weight matrix ``w`` (rows in sorted order)."""
    tps, fps, p, n = _roc_from_weights(srt, w)
    pos = srt.y_sorted == 1.0
    tp = w[:, pred_sorted & pos].sum(axis=1)
    fp = w[:, pred_sorted & ~pos].sum(axis=1)
    return {
        "auc_roc": _auc_from_counts(tps, fps),
        "pr_auc": _ap_from_counts(tps, fps),
        "pauc_80": _pauc_from_counts(tps, fps),
        **_threshold_metrics(tp, fp, n - fp, p - tp),
    }


def bootstrap(
    y_true: ArrayLike,
    y_score: ArrayLike,
    threshold: float,
    groups: ArrayLike | None = None,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> BootstrapResult:
    """Percentile bootstrap (Efron & Tibshirani 1993) of every metric in ``CI_KEYS``.

    With ``groups`` (lesion or patient ids) whole groups are drawn with replacement (cluster
    bootstrap), so correlated images of one lesion move together; otherwise rows are drawn. The
    threshold stays fixed (it was frozen on validation). Resamples that lack a class are discarded
    and redrawn; their number is reported in ``n_redrawn`` and logged. If more than 10 draws per
    requested resample are needed the data are too small or too unbalanced and DataError is raised.
    """
    if n_boot < 1:
        raise ConfigError(f"n_boot must be >= 1; got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be in (0, 1); got {alpha}")
    y, s = _as_arrays(y_true, y_score)
    srt = _sort(y, s)
    pred_sorted = s[srt.order] >= threshold
    if groups is None:
        unit_of_row = np.arange(y.size)
        n_units, unit = y.size, "row"
    else:
        unit_of_row, n_units = _group_index(groups, y.size)
        unit = "group"
    unit_sorted = unit_of_row[srt.order]
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, _CHUNK_CELLS // max(y.size, n_units)))
    parts: dict[str, list[NDArray[np.float64]]] = {k: [] for k in CI_KEYS}
    kept = drawn = 0
    while kept < n_boot:
        if drawn >= 10 * n_boot:
            raise DataError(
                f"only {kept} of {drawn} bootstrap resamples contained both classes: the evaluation "
                f"set ({int(y.sum())} malignant of {y.size}, {n_units} {unit}s) is too small for CIs"
            )
        b = min(chunk, n_boot - kept)
        w = _draw_weights(rng, b, n_units)[:, unit_sorted]  # unit counts -> row weights, sorted order
        drawn += b
        p = w @ srt.y_sorted
        valid = (p > 0) & (p < w.sum(axis=1))
        w = w[valid]
        if w.shape[0] == 0:
            continue
        for k, v in _metrics_from_weights(srt, w, pred_sorted).items():
            parts[k].append(v)
        kept += w.shape[0]
    samples = {k: np.concatenate(v)[:n_boot] for k, v in parts.items()}
    redrawn = drawn - kept
    if redrawn:
        logger.warning("bootstrap: %d of %d resamples lacked a class and were redrawn", redrawn, drawn)
    q = [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)]
    ci = {k: (float(np.percentile(v, q[0])), float(np.percentile(v, q[1]))) for k, v in samples.items()}
    logger.info("bootstrap: %d resamples of %d %ss, %d redrawn", n_boot, n_units, unit, redrawn)
    return BootstrapResult(
        ci=ci, n_boot=n_boot, n_redrawn=redrawn, unit=unit, n_units=n_units, alpha=alpha, samples=samples
    )


def bootstrap_ci(
    y_true: ArrayLike,
    y_score: ArrayLike,
    threshold: float,
    groups: ArrayLike | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """(lower, upper) percentile ``1 - alpha`` CI for each metric in ``CI_KEYS``; see :func:`bootstrap`."""
    return bootstrap(y_true, y_score, threshold, groups, n_boot=n_boot, alpha=alpha, seed=seed).ci


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
    y, s = _as_arrays(y_true, y_score, need_both_classes=False)
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
    y, s = _as_arrays(y_true, y_score)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=True)
    thr = np.where(np.isfinite(thr), thr, np.nextafter(s.max(), np.inf))
    if fpr.size > max_points:
        keep = np.unique(np.round(np.linspace(0, fpr.size - 1, max_points)).astype(int))
        fpr, tpr, thr = fpr[keep], tpr[keep], thr[keep]
    return fpr.tolist(), tpr.tolist(), thr.tolist()


def _new_figure(figsize: tuple[float, float] = (5.0, 5.0)) -> Any:
    """A Figure on its own Agg canvas: no pyplot, so no global state and no display needed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    logger.debug("wrote %s", path)
    return path


def plot_roc(y_true: ArrayLike, y_score: ArrayLike, threshold: float, path: str | Path) -> Path:
    """ROC curve with the pAUC band (TPR >= 0.8) shaded and the operating point marked."""
    y, s = _as_arrays(y_true, y_score)
    fpr, tpr, _ = roc_curve(y, s)
    m = binary_metrics(y, s, threshold)
    fig = _new_figure()
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, color="C0", label=f"ROC (AUC {m['auc_roc']:.3f})")
    ax.fill_between(
        fpr,
        PAUC_MIN_TPR,
        np.maximum(tpr, PAUC_MIN_TPR),
        color="C0",
        alpha=0.2,
        label=f"pAUC TPR≥0.8: {m['pauc_80']:.4f} / 0.2",
    )
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8, label="chance")
    ax.plot(
        [1 - m["specificity"]],
        [m["sensitivity"]],
        "o",
        color="C3",
        label=f"threshold {threshold:.3g}: sens {m['sensitivity']:.3f}, spec {m['specificity']:.3f}",
    )
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="1 - specificity (FPR)",
        ylabel="sensitivity (TPR)",
        title=f"ROC, n={m['n']} ({m['tp'] + m['fn']} malignant)",
    )
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_pr(y_true: ArrayLike, y_score: ArrayLike, threshold: float, path: str | Path) -> Path:
    """Precision-recall curve (step, as average precision sums it) with the operating point marked."""
    from sklearn.metrics import precision_recall_curve

    y, s = _as_arrays(y_true, y_score)
    precision, recall, _ = precision_recall_curve(y, s)
    m = binary_metrics(y, s, threshold)
    fig = _new_figure()
    ax = fig.add_subplot()
    ax.step(recall, precision, where="post", color="C0", label=f"PR (AP {m['pr_auc']:.3f})")
    ax.axhline(m["prevalence"], ls="--", color="grey", lw=0.8, label=f"prevalence {m['prevalence']:.3f}")
    ax.plot(
        [m["sensitivity"]],
        [m["precision"]],
        "o",
        color="C3",
        label=f"threshold {threshold:.3g}: recall {m['sensitivity']:.3f}, PPV {m['precision']:.3f}",
    )
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="recall (sensitivity)",
        ylabel="precision (PPV)",
        title=f"Precision-recall, n={m['n']}",
    )
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)


def plot_confusion(matrix: Sequence[Sequence[int]], path: str | Path) -> Path:
    """2x2 confusion matrix ``[[tn, fp], [fn, tp]]`` with counts and row percentages."""
    mat = np.asarray(matrix, dtype=np.int64)
    if mat.shape != (2, 2):
        raise DataError(f"confusion matrix must be 2x2 [[tn, fp], [fn, tp]]; got shape {mat.shape}")
    row = mat.sum(axis=1, keepdims=True)
    share = np.divide(mat, row, out=np.zeros(mat.shape), where=row > 0)
    fig = _new_figure((4.5, 4.0))
    ax = fig.add_subplot()
    ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(2):
        for j in range(2):
            ax.text(
                j,
                i,
                f"{mat[i, j]}\n{share[i, j]:.1%}",
                ha="center",
                va="center",
                color="white" if share[i, j] > 0.5 else "black",
            )
    labels = ["benign", "malignant"]
    ax.set_xticks([0, 1], labels)
    ax.set_yticks([0, 1], labels)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (row %)")
    return _save(fig, path)


def plot_reliability(calib: dict[str, Any], path: str | Path) -> Path:
    """Reliability diagram from :func:`calibration`: observed malignant fraction vs mean score per bin,
    with the bin counts below (empty bins are skipped)."""
    lower = np.asarray(calib["bin_lower"], dtype=np.float64)
    upper = np.asarray(calib["bin_upper"], dtype=np.float64)
    count = np.asarray(calib["count"], dtype=np.float64)
    mean_score = np.asarray([np.nan if v is None else v for v in calib["mean_score"]], dtype=np.float64)
    frac = np.asarray([np.nan if v is None else v for v in calib["frac_positive"]], dtype=np.float64)
    ok = count > 0
    fig = _new_figure((5.0, 6.0))
    ax, ax_n = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8, label="perfect calibration")
    ax.bar(
        lower[ok],
        frac[ok],
        width=(upper - lower)[ok],
        align="edge",
        alpha=0.3,
        color="C0",
        edgecolor="C0",
        label="observed fraction",
    )
    ax.plot(mean_score[ok], frac[ok], "o-", color="C0", label="mean score vs observed")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        ylabel="fraction malignant",
        title=f"Reliability (ECE {calib['ece']:.3f}, MCE {calib['mce']:.3f})",
    )
    ax.legend(loc="upper left", fontsize=8)
    ax_n.bar(lower, count, width=upper - lower, align="edge", color="grey")
    ax_n.set(xlabel="predicted probability of melanoma", ylabel="count")
    return _save(fig, path)
