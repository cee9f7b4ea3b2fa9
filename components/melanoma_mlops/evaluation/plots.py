"""The evaluation figures: ROC with the pAUC band and operating point, PR, confusion, reliability.

Matplotlib without pyplot (a Figure on its own Agg canvas): no global state, no display needed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import roc_curve

from melanoma_mlops.errors import DataError
from melanoma_mlops.evaluation.metrics import PAUC_MIN_TPR, as_arrays, binary_metrics

logger = logging.getLogger(__name__)


def new_figure(figsize: tuple[float, float] = (5.0, 5.0)) -> Any:
    """A Figure on its own Agg canvas: no pyplot, so no global state and no display needed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    logger.debug("wrote %s", path)
    return path


def plot_roc(
    y_true: ArrayLike,
    y_score: ArrayLike,
    threshold: float,
    path: str | Path,
    positive_name: str = "malignant",
) -> Path:
    """ROC curve with the pAUC band (TPR >= 0.8) shaded and the operating point marked."""
    y, s = as_arrays(y_true, y_score)
    fpr, tpr, _ = roc_curve(y, s)
    m = binary_metrics(y, s, threshold)
    fig = new_figure()
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
        title=f"ROC, n={m['n']} ({m['tp'] + m['fn']} {positive_name})",
    )
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path)


def plot_pr(y_true: ArrayLike, y_score: ArrayLike, threshold: float, path: str | Path) -> Path:
    """Precision-recall curve (step, as average precision sums it) with the operating point marked."""
    from sklearn.metrics import precision_recall_curve

    y, s = as_arrays(y_true, y_score)
    precision, recall, _ = precision_recall_curve(y, s)
    m = binary_metrics(y, s, threshold)
    fig = new_figure()
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
    return save_figure(fig, path)


def plot_confusion(
    matrix: Sequence[Sequence[int]], path: str | Path, class_names: Sequence[str] = ("benign", "malignant")
) -> Path:
    """2x2 confusion matrix ``[[tn, fp], [fn, tp]]`` with counts and row percentages, its rows and
    columns named by the task's classes (``not melanoma``/``melanoma`` with ``--task melanoma``)."""
    mat = np.asarray(matrix, dtype=np.int64)
    if mat.shape != (2, 2):
        raise DataError(f"confusion matrix must be 2x2 [[tn, fp], [fn, tp]]; got shape {mat.shape}")
    row = mat.sum(axis=1, keepdims=True)
    share = np.divide(mat, row, out=np.zeros(mat.shape), where=row > 0)
    fig = new_figure((4.5, 4.0))
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
    labels = list(class_names)
    ax.set_xticks([0, 1], labels)
    ax.set_yticks([0, 1], labels)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (row %)")
    return save_figure(fig, path)


def plot_reliability(calib: dict[str, Any], path: str | Path, positive_name: str = "malignant") -> Path:
    """Reliability diagram from :func:`calibration`: observed class-1 fraction vs mean score per bin,
    with the bin counts below (empty bins are skipped)."""
    lower = np.asarray(calib["bin_lower"], dtype=np.float64)
    upper = np.asarray(calib["bin_upper"], dtype=np.float64)
    count = np.asarray(calib["count"], dtype=np.float64)
    mean_score = np.asarray([np.nan if v is None else v for v in calib["mean_score"]], dtype=np.float64)
    frac = np.asarray([np.nan if v is None else v for v in calib["frac_positive"]], dtype=np.float64)
    ok = count > 0
    fig = new_figure((5.0, 6.0))
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
        ylabel=f"fraction {positive_name}",
        title=f"Reliability (ECE {calib['ece']:.3f}, MCE {calib['mce']:.3f})",
    )
    ax.legend(loc="upper left", fontsize=8)
    ax_n.bar(lower, count, width=upper - lower, align="edge", color="grey")
    ax_n.set(xlabel="predicted probability of melanoma", ylabel="count")
    return save_figure(fig, path)
