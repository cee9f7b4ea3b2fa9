"""The model card's "Performance by subgroup" section, from the evaluate step's sliced record
(:func:`melanoma_mlops.evaluation.subgroups.evaluate_slices`).

It shows every slice with its counts and intervals, marks the slices too small to judge, and says
what the data set does not tell: a subgroup column it lacks ("no skin-tone information: performance
across skin tones unknown"), and a subgroup on which every test image agrees (nothing to compare).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from melanoma_mlops.evaluation.card_text import NOT_MEASURED, capitalised, cell, num, with_interval
from melanoma_mlops.evaluation.subgroups import INSUFFICIENT, PAUC_MIN_POSITIVES

TITLE = "## Performance by subgroup"


def _row(label: str, r: Mapping[str, Any]) -> str:
    counts = f"| {cell(label)} | {num(r.get('n'))} | {num(r.get('positives'))} |"
    if r.get("status") == INSUFFICIENT:
        return counts + " insufficient | – | – | – |"
    cells = [
        with_interval(r.get("auc_roc"), r.get("auc_roc_ci")),
        with_interval(r.get("sensitivity"), r.get("sensitivity_ci")),
        with_interval(r.get("specificity"), r.get("specificity_ci")),
        with_interval(r.get("pauc_80"), r.get("pauc_80_ci"), 4),
    ]
    return counts + " " + " | ".join(cells) + " |"


def subgroup_section(record: Mapping[str, Any] | None, class_names: Sequence[str]) -> list[str]:
    """The section's Markdown lines (``not measured`` when the evaluation recorded no subgroups)."""
    lines = [TITLE, ""]
    if not record:
        return [*lines, f"Performance by subgroup: {NOT_MEASURED}.", ""]
    negative, positive = class_names
    rows = record.get("slices") or []
    unit = {"group": "whole groups (lesions/patients) resampled", "row": "images resampled"}.get(
        str(record.get("unit")), "resampling unit not recorded"
    )
    lines += [
        "The test set cut by each subgroup its metadata names, the figures at the same frozen threshold. "
        f"Intervals: 95% percentile bootstrap, {unit} within the subgroup. Images whose value is missing "
        "form the subgroup *unknown* (never dropped). A subgroup with fewer than "
        f"{num(record.get('min_positives'))} {positive} or {num(record.get('min_negatives'))} {negative} "
        "test images is *insufficient*: its counts are shown, no figure and no verdict. pAUC (above 80% "
        f"TPR, max 0.2) is shown from {PAUC_MIN_POSITIVES} {positive} images up.",
        "",
    ]
    if rows:
        lines += [
            f"| Subgroup | Images | {cell(capitalised(positive))} | ROC AUC (95% CI) | Sensitivity (95% CI) "
            "| Specificity (95% CI) | pAUC (95% CI) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        overall = record.get("overall")
        if overall:
            lines.append(_row("**all test images**", overall))
        lines += [_row(f"{r['family']} = {r['value']}", r) for r in rows]
        lines.append("")
    else:
        lines += ["No subgroup to compare: the test images carry no subgroup metadata with two values.", ""]
    notes = [
        f"{cell(name)}: every test image is *{cell(value)}* (nothing to compare)"
        for name, value in (record.get("uniform") or {}).items()
    ]
    notes += [cell(item["statement"]) for item in record.get("lacking") or []]
    if notes:
        lines += ["What this evaluation cannot say:", ""]
        lines += [f"- {n}" for n in notes]
        lines.append("")
    return lines
