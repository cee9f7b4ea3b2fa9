"""Choosing the decision threshold on validation data, before test is looked at.

A prediction is positive (malignant) when ``score >= threshold``; see
:mod:`melanoma_mlops.evaluation.metrics` for the conventions shared with every metric.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import ArrayLike

from melanoma_mlops.config import THRESHOLD_RULES  # one source for the CLI, the pipeline and this module
from melanoma_mlops.errors import ConfigError
from melanoma_mlops.evaluation.metrics import as_arrays, roc_from_weights, sort_scores

logger = logging.getLogger(__name__)


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
        as_arrays(y_true, y_score, need_both_classes=False)
        return float(fixed_threshold)
    y, s = as_arrays(y_true, y_score)
    srt = sort_scores(y, s)
    tps, fps, p, n = roc_from_weights(srt, np.ones((1, y.size)))
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
