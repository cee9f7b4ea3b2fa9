"""Percentile bootstrap confidence intervals of every metric, resampling whole groups.

Bootstrap confidence intervals resample whole groups (lesion / patient) when group ids are given,
because images of the same lesion are not independent; resampling rows then would understate the
uncertainty. All bootstrap metrics are computed from resampling *weights* (how many times each row
is drawn), which is exactly equivalent to recomputing the metric on the resampled rows but lets
1000 resamples be evaluated as a few array operations.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from melanoma_mlops.errors import ConfigError, DataError
from melanoma_mlops.evaluation.metrics import (
    CI_KEYS,
    SortedScores,
    ap_from_counts,
    as_arrays,
    auc_from_counts,
    pauc_from_counts,
    roc_from_weights,
    sort_scores,
    threshold_metrics,
)

logger = logging.getLogger(__name__)

# Resamples are processed in chunks of at most this many (resample x row) cells, which bounds
# memory at a few tens of MB whatever n_boot and the data size are.
_CHUNK_CELLS = 2_000_000


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


def resampling_units(df: pd.DataFrame) -> np.ndarray | None:
    """The bootstrap's unit per manifest row: its group (lesion/patient/duplicate cluster), or the
    image itself when it has none; None when no row has a group (rows are then resampled).

    One definition for the evaluate step, its subgroups, the gate and external validation, so an
    interval means the same everywhere.
    """
    groups = df["group_id"].astype(str) if "group_id" in df.columns else pd.Series("", index=df.index)
    if (groups == "").all():
        return None
    return np.where(groups == "", "image:" + df["image_uri"].astype(str), groups).astype(str)


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


def metrics_from_weights(
    srt: SortedScores, w: NDArray[np.float64], pred_sorted: NDArray[np.bool_]
) -> dict[str, NDArray[np.float64]]:
    """Every CI metric for each row of the (B, n) row-weight matrix ``w`` (rows in sorted order)."""
    tps, fps, p, n = roc_from_weights(srt, w)
    pos = srt.y_sorted == 1.0
    tp = w[:, pred_sorted & pos].sum(axis=1)
    fp = w[:, pred_sorted & ~pos].sum(axis=1)
    return {
        "auc_roc": auc_from_counts(tps, fps),
        "pr_auc": ap_from_counts(tps, fps),
        "pauc_80": pauc_from_counts(tps, fps),
        **threshold_metrics(tp, fp, n - fp, p - tp),
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
    y, s = as_arrays(y_true, y_score)
    srt = sort_scores(y, s)
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
        for k, v in metrics_from_weights(srt, w, pred_sorted).items():
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
