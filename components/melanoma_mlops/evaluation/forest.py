"""The forest plot of performance by subgroup: one row per slice, its point and 95% interval, and
the whole set's value as a vertical line with its interval shaded behind.

Two panels, AUC and sensitivity at the frozen threshold (the gate judges slices on both). A slice
too small to judge keeps its row, with its counts written where the point would be, so a reader sees
that it exists and why it has no figure.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from melanoma_mlops.evaluation.plots import new_figure, save_figure
from melanoma_mlops.evaluation.subgroups import INSUFFICIENT

PANELS = (("auc_roc", "ROC AUC"), ("sensitivity", "sensitivity at the frozen threshold"))


def _finite(*values: Any) -> bool:
    return all(v is not None and math.isfinite(float(v)) for v in values)


def plot_forest(record: dict[str, Any], path: str | Path, *, positive_name: str = "class 1") -> Path | None:
    """Write the forest plot of ``record`` (:func:`melanoma_mlops.evaluation.subgroups.evaluate_slices`);
    None when there is no slice to draw."""
    rows = record.get("slices") or []
    if not rows:
        return None
    labels = [f"{r['family']} = {r['value']}  (n={r['n']}, {r['positives']} {positive_name})" for r in rows]
    height = 1.2 + 0.32 * len(rows)
    fig = new_figure((11.0, height))
    axes = fig.subplots(1, len(PANELS), sharey=True)
    overall = record.get("overall") or {}
    ys = list(range(len(rows)))[::-1]
    for ax, (key, title) in zip(axes, PANELS, strict=True):
        whole, whole_ci = overall.get(key), overall.get(f"{key}_ci")
        if _finite(whole):
            ax.axvline(float(whole), color="C3", lw=1.2)
            if whole_ci and _finite(*whole_ci):
                ax.axvspan(float(whole_ci[0]), float(whole_ci[1]), color="C3", alpha=0.1)
        for y, r in zip(ys, rows, strict=True):
            value, ci = r.get(key), r.get(f"{key}_ci")
            if r["status"] == INSUFFICIENT or not _finite(value):
                why = "insufficient" if r["status"] == INSUFFICIENT else "undefined"
                ax.text(0.5, y, why, ha="center", va="center", fontsize=8, color="grey")
                continue
            if ci and _finite(*ci):
                ax.plot([ci[0], ci[1]], [y, y], color="C0", lw=1.5)
            ax.plot([value], [y], "s", color="C0", ms=5)
        ax.set_xlim(0.0, 1.0)
        reference = f"\nred: whole test set {float(whole):.3f}" if _finite(whole) else ""
        if reference and whole_ci and _finite(*whole_ci):
            reference += f" [{float(whole_ci[0]):.3f}, {float(whole_ci[1]):.3f}]"
        ax.set_title(title + reference, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(ys, labels, fontsize=8)
    axes[0].set_ylim(-0.8, len(rows) - 0.2)
    fig.suptitle(
        f"Performance by subgroup: point and 95% interval (bootstrap by {record.get('unit', 'group')})",
        fontsize=10,
    )
    return save_figure(fig, path)
