"""The parent run's description (MLflow's run note): what a person needs to compare runs at a glance.

Written by the gate step, the pipeline's last, from what the parent run holds: the data and its
split sizes (params), the test metrics with their 95% bootstrap intervals (metrics), the gate's
decision and a link to the registered model version (tags). :func:`render` is pure (tested on
numbers); :func:`write` reads the run and sets the note.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mlflow.tracking import MlflowClient

from melanoma_mlops import tracking, ui_links
from melanoma_mlops.artifacts import FINGERPRINT_TAG, TASK_CLASSES, class_keys

#: Test metrics shown, in order, with their labels.
SHOWN = (
    ("auc_roc", "AUC"),
    ("pr_auc", "PR AUC"),
    ("sensitivity", "sensitivity"),
    ("specificity", "specificity"),
    ("balanced_accuracy", "balanced accuracy"),
    ("f1", "F1"),
)
ARTIFACTS = (
    "model_card.md",
    "promotion/gate.md",
    "evaluation/roc.png",
    "evaluation/pr.png",
    "gradcam/gradcam_grid.png",
    "data_docs.html",
)


def _num(value: Any, digits: int = 3) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "?"
    return f"{number:.{digits}f}" if math.isfinite(number) else "?"


def metric_with_ci(metrics: Mapping[str, float], key: str) -> str:
    """``0.912 [0.871, 0.948]`` (the interval when the run has it)."""
    value = _num(metrics.get(f"test/{key}"))
    low, high = metrics.get(f"test/{key}_ci_low"), metrics.get(f"test/{key}_ci_high")
    return f"{value} [{_num(low)}, {_num(high)}]" if low is not None and high is not None else value


def _int(params: Mapping[str, str], key: str) -> str:
    raw = params.get(key, "")
    try:
        return str(round(float(raw)))
    except ValueError:
        return "?"


def render(
    run_name: str,
    params: Mapping[str, str],
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
    decision: Mapping[str, Any] | None = None,
) -> str:
    """The note's Markdown."""
    headline = ", ".join(
        f"{label} {metric_with_ci(metrics, key)}" for key, label in SHOWN[:4] if f"test/{key}" in metrics
    )
    synthetic = " (SYNTHETIC demo data)" if tags.get("data.synthetic") == "true" else ""
    task = params.get("task", "malignant")
    names, keys = TASK_CLASSES.get(task, TASK_CLASSES["malignant"]), class_keys(task)
    source = params.get("data", tags.get("data.source", "?"))
    lines = [
        f"**{run_name}**: test {headline or 'metrics not recorded'}"
        f" at threshold {_num(metrics.get('threshold'), 4)} (frozen on validation){synthetic}",
        "",
        "| | |",
        "|---|---|",
        f"| data | `{source}` · layout {tags.get('data.layout', '?')} · "
        f"fingerprint `{tags.get(FINGERPRINT_TAG, '')[:12]}` · {_int(params, 'data/images')} images "
        f"({_int(params, f'data/{keys[0]}')} {names[0]}, {_int(params, f'data/{keys[1]}')} {names[1]}) |",
        f"| split (images / groups) | train {_int(params, 'split/train_images')} / "
        f"{_int(params, 'split/train_groups')} · val {_int(params, 'split/val_images')} / "
        f"{_int(params, 'split/val_groups')} · test {_int(params, 'split/test_images')} / "
        f"{_int(params, 'split/test_groups')} · leakage check {tags.get('leakage_check', '?')} |",
    ]
    for key, label in SHOWN:
        if f"test/{key}" in metrics:
            lines.append(f"| test {label} (95% CI) | {metric_with_ci(metrics, key)} |")
    if decision:
        champion = decision.get("champion") or {}
        versus = (
            f" · champion v{champion.get('version')} on the same test set: AUC {_num(champion.get('auc'))}"
            if champion.get("auc") is not None
            else ""
        )
        action = str(decision.get("action", "?")).upper()
        lines.append(f"| gate | **{action}** ({decision.get('reason', '')}){versus} |")
    name, version = tags.get("model.name"), tags.get("model.version")
    if name and version:
        link = ui_links.model_version_path(name, version)
        lines.append(f"| registered model | [{name} version {version}]({link}) |")
    lines.append("| artifacts | " + " · ".join(f"`{a}`" for a in ARTIFACTS) + " |")
    return "\n".join(lines) + "\n"


def write(parent_run_id: str, decision: Mapping[str, Any] | None = None) -> str:
    """Set the parent run's note from what it holds (and the gate's decision); return it."""
    run = MlflowClient().get_run(parent_run_id)
    note = render(run.info.run_name, run.data.params, run.data.metrics, run.data.tags, decision)
    tracking.set_note(parent_run_id, note)
    return note
