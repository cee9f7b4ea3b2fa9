"""The candidate against the champion per subgroup, on the same test images: paired differences.

A candidate can match the champion on the whole test set and still be worse on one subgroup (a
site, an age band): the whole-set figure averages it away. For every slice the evaluate step cuts
(:func:`melanoma_mlops.evaluation.subgroups.slices`, the same age bands), with enough images of both
classes, both models' AUC and sensitivity (each at its own frozen threshold) are recomputed on the
same resampled groups, and the interval is that of the difference candidate - champion. The gate
(:func:`melanoma_mlops.registry.gate.decide`) holds a candidate whose lower bound falls below the
margin on any of them. Numbers only: no MLflow, no TensorFlow.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from melanoma_mlops.errors import DataError
from melanoma_mlops.evaluation import bootstrap, metrics
from melanoma_mlops.evaluation.subgroups import SliceSpec, slices

logger = logging.getLogger(__name__)

N_BOOT = 1000
BOOT_SEED = 0
NO_INTERVAL = (float("nan"), float("nan"))
#: The figures compared per subgroup (the gate's margin applies to both).
COMPARED = ("auc_roc", "sensitivity")


def bootstrap_or_none(
    y: np.ndarray, scores: np.ndarray, threshold: float, groups: np.ndarray | None, n_boot: int = N_BOOT
) -> bootstrap.BootstrapResult | None:
    """The gate's bootstrap (fixed seed: the candidate's and the champion's resamples are the same),
    or None when nearly no resample holds both classes (the figure then has no interval)."""
    try:
        return bootstrap.bootstrap(y, scores, threshold, groups, n_boot=n_boot, seed=BOOT_SEED)
    except DataError as exc:  # a class missing from nearly every resample: no interval
        logger.warning("no bootstrap interval (%s)", exc)
        return None


def paired_differences(
    y: np.ndarray,
    scores_a: np.ndarray,
    threshold_a: float,
    scores_b: np.ndarray,
    threshold_b: float,
    groups: np.ndarray | None,
    keys: tuple[str, ...] = COMPARED,
    n_boot: int = N_BOOT,
) -> dict[str, tuple[float, tuple[float, float]]]:
    """{metric: (a - b, its paired 95% interval)} on the same images, each model at its own threshold.

    :func:`melanoma_mlops.evaluation.bootstrap.bootstrap` draws its resamples from the seed, the
    groups and the labels alone, so two calls with the same seed see the same resampled groups:
    the per-resample differences are paired (``tests/unit/test_promotion.py`` checks it).
    """
    point_a = metrics.binary_metrics(y, scores_a, threshold_a)
    point_b = metrics.binary_metrics(y, scores_b, threshold_b)
    boot_a = bootstrap_or_none(y, scores_a, threshold_a, groups, n_boot)
    boot_b = bootstrap_or_none(y, scores_b, threshold_b, groups, n_boot)
    out: dict[str, tuple[float, tuple[float, float]]] = {}
    for key in keys:
        delta = float(point_a[key] - point_b[key])
        if boot_a is None or boot_b is None:
            out[key] = (delta, NO_INTERVAL)
            continue
        diffs = boot_a.samples[key] - boot_b.samples[key]
        low, high = np.percentile(diffs, [100 * boot_a.alpha / 2, 100 * (1 - boot_a.alpha / 2)])
        out[key] = (delta, (float(low), float(high)))
    return out


def compare_slices(
    test: pd.DataFrame,
    candidate: tuple[np.ndarray, float],
    champion: tuple[np.ndarray, float],
    spec: SliceSpec,
    *,
    n_boot: int = N_BOOT,
) -> list[dict[str, Any]]:
    """Per slice of ``test``: its counts and, with at least ``spec``'s minimum of each class, the
    paired differences (candidate - champion) in AUC and sensitivity with their 95% intervals.

    ``candidate`` and ``champion`` are (scores in ``test``'s order, frozen threshold).
    """
    y = test["label"].to_numpy().astype(int)
    units = bootstrap.resampling_units(test)
    (cand_scores, cand_threshold), (champ_scores, champ_threshold) = candidate, champion
    out: list[dict[str, Any]] = []
    for sl in slices(test.reset_index(drop=True), spec):
        m = sl.mask
        pos, neg = int(y[m].sum()), int((1 - y[m]).sum())
        row: dict[str, Any] = {"name": sl.key, "n_positive": pos, "n_negative": neg}
        if pos >= spec.min_positives and neg >= spec.min_negatives:
            diffs = paired_differences(
                y[m],
                cand_scores[m],
                cand_threshold,
                champ_scores[m],
                champ_threshold,
                None if units is None else units[m],
                n_boot=n_boot,
            )
            for key, (delta, ci) in diffs.items():
                short = "auc" if key == "auc_roc" else key
                row[f"{short}_delta"], row[f"{short}_delta_ci"] = delta, list(ci)
        out.append(row)
    return out
