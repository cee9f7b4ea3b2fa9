"""A Markdown model card (Mitchell et al. 2019, "Model Cards for Model Reporting") from a plain dict.

Every model carries its contract: what it is for, what it was trained and tested on, where its
decision threshold sits and how good it is there, with uncertainty. A section whose data is missing
says "not measured" (or "not recorded" for descriptive fields) instead of vanishing, so a reader can
tell "we did not look" from "there was nothing to see".

``info`` keys (all optional except ``model.name``; extra keys are ignored):

``model``            dict: ``name`` (str, required), ``version`` (str/int), ``architecture`` (str),
                     ``input`` (str: shape, dtype, value range, preprocessing), ``classes`` (str),
                     ``lineage`` (dict: e.g. mlflow_run_id, pipeline_run_id, git_commit), ``created``.
``data``             dict: ``source`` (str: folder path, ISIC metadata CSV, s3:// prefix),
                     ``layout`` (str: e.g. "folder", "isic-csv", "manifest"),
                     ``synthetic`` (bool: True puts a warning at the top),
                     ``fingerprint`` (str: :func:`melanoma_mlops.data.manifest.fingerprint`),
                     ``counts`` ({split: {<class 0 name>: int, <class 1 name>: int, "groups": int
                     (optional)}}, the task's class names (``benign``/``malignant``,
                     ``not melanoma``/``melanoma``: :func:`melanoma_mlops.data.labels.class_names`),
                     splits such as train / val / test / train_oversampled),
                     ``group_key`` (str: what keeps splits apart, with counts),
                     ``patient_id`` (str: whether patient-level grouping was possible),
                     ``exclusions`` (list[str] or {reason: count}).
``labels``           dict: ``task`` ("malignant" | "melanoma"), ``mapping`` ({source label: 0/1}),
                     ``composition`` ({diagnosis: images of class 1}, {} when the metadata names no
                     finer diagnosis than the label), see :mod:`melanoma_mlops.data.labels`.
``protocol``         dict: ``description`` (str), ``hyperparameters``
                     (dict, e.g. ``TrainConfig.as_params()``).
``operating_point``  dict: ``rule`` ("sensitivity" | "youden" | "fixed"), ``threshold`` (float),
                     ``target_sensitivity`` (float, for the sensitivity rule), ``chosen_on`` (str,
                     default "validation").
``evaluation``       dict: ``split`` (str, default "test").
``metrics``          dict: :func:`melanoma_mlops.evaluation.metrics.binary_metrics` at the frozen threshold.
``ci``               dict: :func:`melanoma_mlops.evaluation.bootstrap.bootstrap_ci`
                     ({metric: (lower, upper)}).
``bootstrap``        dict: ``n_boot``, ``alpha`` (default 0.05), ``unit`` ("group" | "row"),
                     ``n_units``, ``n_redrawn`` (as in
                     :class:`melanoma_mlops.evaluation.bootstrap.BootstrapResult`), ``units`` (str:
                     the groups resampled, in words, e.g. "whole lesions resampled (40 lesions)").
``calibration``      dict: :func:`melanoma_mlops.evaluation.metrics.calibration`
                     (``ece``, ``mce``, ``brier``, ``n_bins``).
``gradcam``          dict: ``energy_in_mask`` (mean share of Grad-CAM energy inside the lesion mask),
                     ``pointing_game`` (share of images whose heatmap maximum falls in the mask),
                     ``n_images``, ``n_with_mask``.
``subgroups``        dict: :func:`melanoma_mlops.evaluation.subgroups.evaluate_slices` (the section
                     "Performance by subgroup": :mod:`melanoma_mlops.evaluation.modelcard_subgroups`).
``limitations``      list[str]: appended to the standing limitations below.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from melanoma_mlops.data import labels as label_info
from melanoma_mlops.errors import ConfigError
from melanoma_mlops.evaluation.card_text import NOT_MEASURED, NOT_RECORDED, capitalised, cell, num
from melanoma_mlops.evaluation.modelcard_subgroups import subgroup_section

logger = logging.getLogger(__name__)


def intended_use(task: str = "malignant") -> str:
    """What the model is for, naming class 1 for what it is under ``task``."""
    negative, positive = label_info.class_names(task)
    return (
        "Research and education only: studying transfer learning, data leakage, evaluation and MLOps for "
        f"dermoscopic skin-lesion classification. The model outputs a score for *{positive}* versus "
        f"*{negative}* for one dermoscopic image of a single lesion ({label_info.describe_task(task)}; "
        "see Labels)."
    )


OUT_OF_SCOPE = [
    "**This is not a medical device and not a diagnostic tool.** It has no regulatory clearance "
    "(CE / FDA) and must not be used to diagnose, triage, screen, or reassure any person.",
    "Any clinical decision (biopsy, excision, follow-up, discharge) for a real patient.",
    "Images unlike the training data: clinical (non-dermoscopic) photographs, other devices, other "
    "body sites, or populations and skin types not represented in the data below.",
    "Lesion types other than the two classes it was trained on; it cannot say 'neither'.",
]
STANDING_LIMITATIONS = [
    "The decision threshold was chosen on the validation split; sensitivity and specificity on new "
    "data are estimates with the uncertainty shown, not guarantees.",
    "Precision (PPV) and NPV depend on prevalence: they hold only where the share of class 1 matches "
    "the evaluation set's.",
    "Public dermoscopy archives such as ISIC are dominated by lighter skin types and by lesions "
    "selected for biopsy or follow-up; performance on other populations is not established unless "
    "measured on them.",
    "Grad-CAM heatmaps show where the network's evidence lies, not why; a heatmap on the lesion does "
    "not make a prediction correct.",
]

# (key, label, decimals) of the metrics table, in reading order.
_METRIC_ROWS = [
    ("sensitivity", "Sensitivity (recall, TPR)", 3),
    ("specificity", "Specificity (TNR)", 3),
    ("balanced_accuracy", "Balanced accuracy", 3),
    ("precision", "Precision (PPV)", 3),
    ("npv", "Negative predictive value", 3),
    ("f1", "F1", 3),
    ("accuracy", "Accuracy", 3),
    ("auc_roc", "ROC AUC", 3),
    ("pr_auc", "Average precision (PR AUC)", 3),
    ("pauc_80", "pAUC above 80% TPR (ISIC; max 0.2)", 4),
]


def _section(info: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = info.get(key) or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"model card: info[{key!r}] must be a dict, got {type(value).__name__}")
    return value


def _field(d: Mapping[str, Any], key: str) -> str:
    value = d.get(key)
    return NOT_RECORDED if value is None or value == "" else cell(value)


def _model_section(model: Mapping[str, Any]) -> list[str]:
    lines = [
        "## Model details",
        "",
        f"- **Name:** {_field(model, 'name')}",
        f"- **Version:** {_field(model, 'version')}",
        f"- **Architecture:** {_field(model, 'architecture')}",
        f"- **Input:** {_field(model, 'input')}",
        f"- **Output / classes:** {model.get('classes') or 'score for class 1 (see Labels)'}",
        f"- **Created:** {_field(model, 'created')}",
    ]
    lineage = model.get("lineage") or {}
    lines.append("- **Lineage:**" + (f" {NOT_RECORDED}" if not lineage else ""))
    lines += [f"  - {cell(k)}: `{cell(v)}`" for k, v in lineage.items()]
    return [*lines, ""]


def _data_section(data: Mapping[str, Any], names: tuple[str, str]) -> list[str]:
    synthetic = data.get("synthetic")
    lines = [
        "## Data",
        "",
        f"- **Source:** {_field(data, 'source')}",
        f"- **Layout:** {_field(data, 'layout')}",
        "- **Synthetic:** "
        + (NOT_RECORDED if synthetic is None else ("yes (generated demo images)" if synthetic else "no")),
        "- **Fingerprint (sha256 of sorted image hashes and labels):** "
        + (f"`{data['fingerprint']}`" if data.get("fingerprint") else NOT_RECORDED),
        f"- **Splits kept apart by:** {_field(data, 'group_key')}",
        f"- **Patient ids:** {_field(data, 'patient_id')}",
        "",
        "### Counts per split and class",
        "",
    ]
    counts = data.get("counts") or {}
    if not counts:
        lines.append(f"Counts: {NOT_MEASURED}.")
    else:
        has_groups = any("groups" in c for c in counts.values())
        neg, pos = (cell(capitalised(n)) for n in names)
        lines.append(f"| Split | {neg} | {pos} | Total | {pos} share |" + (" Groups |" if has_groups else ""))
        lines.append("|---|---:|---:|---:|---:|" + ("---:|" if has_groups else ""))
        for split, c in counts.items():
            b, m = int(c.get(names[0], 0)), int(c.get(names[1], 0))
            share = f"{m / (b + m):.1%}" if b + m else "–"
            row = f"| {cell(split)} | {b} | {m} | {b + m} | {share} |"
            if has_groups:
                row += f" {num(c.get('groups'))} |"
            lines.append(row)
    lines += ["", "### Exclusions", ""]
    exclusions = data.get("exclusions")
    if exclusions is None:
        lines.append(f"Exclusions: {NOT_RECORDED}.")
    elif not exclusions:
        lines.append("None: every input image passed validation.")
    elif isinstance(exclusions, Mapping):
        lines += [f"- {cell(reason)}: {num(n)}" for reason, n in exclusions.items()]
    else:
        lines += [f"- {cell(e)}" for e in exclusions]
    return [*lines, ""]


def _labels_section(labels: Mapping[str, Any]) -> list[str]:
    lines = ["## Labels", ""]
    if not labels:
        return [*lines, f"Labels: {NOT_RECORDED}.", ""]
    task = str(labels.get("task") or "malignant")
    mapping = labels.get("mapping") or {}
    lines += [
        f"- **Task:** {cell(label_info.describe_task(task))}",
        "- **Label mapping (source label → class):** "
        + (", ".join(f"`{cell(k)}` → {v}" for k, v in mapping.items()) if mapping else NOT_RECORDED),
        "",
        f"### What class 1 ({cell(label_info.class_names(task)[1])}) is made of",
        "",
    ]
    composition = labels.get("composition") or {}
    if not composition:
        return [*lines, "Not recorded: the metadata names no diagnosis finer than the label.", ""]
    total = sum(composition.values())
    lines += ["| Diagnosis (finest in the metadata) | Images | Share of class 1 |", "|---|---:|---:|"]
    lines += [f"| {cell(d)} | {n} | {n / total:.1%} |" for d, n in composition.items()]
    return [*lines, "", f"All splits together: {total} images of class 1.", ""]


def _protocol_section(protocol: Mapping[str, Any]) -> list[str]:
    lines = ["## Training protocol", "", protocol.get("description") or f"Protocol: {NOT_RECORDED}.", ""]
    hp = protocol.get("hyperparameters") or {}
    if hp:
        lines += ["| Hyperparameter | Value |", "|---|---|"]
        lines += [f"| {cell(k)} | {cell(v)} |" for k, v in hp.items()]
    else:
        lines.append(f"Hyperparameters: {NOT_RECORDED}.")
    return [*lines, ""]


def _operating_point_section(op: Mapping[str, Any], names: tuple[str, str]) -> list[str]:
    rule = op.get("rule")
    threshold = op.get("threshold")
    explain = {
        "sensitivity": "the highest threshold whose validation sensitivity reaches the target "
        f"({num(op.get('target_sensitivity'), 2)}), i.e. the fewest false positives at that sensitivity",
        "youden": "the threshold maximising Youden's J = sensitivity + specificity - 1 on validation",
        "fixed": "a fixed threshold set by configuration",
    }
    lines = [
        "## Operating point",
        "",
        f"- **Rule:** {cell(rule) if rule else NOT_RECORDED}"
        + (f" — {explain[rule]}" if rule in explain else ""),
        f"- **Threshold:** {num(threshold, 4) if threshold is not None else NOT_RECORDED} "
        f"(an image is called {names[1]} when its score is at or above it)",
    ]
    if op:
        lines.append(
            f"- **Chosen on:** {cell(op.get('chosen_on') or 'validation')} split; "
            "frozen before the test evaluation."
        )
    return [*lines, ""]


def _metrics_section(info: Mapping[str, Any], names: tuple[str, str]) -> list[str]:
    metrics = _section(info, "metrics")
    ci = _section(info, "ci")
    boot = _section(info, "bootstrap")
    split = _section(info, "evaluation").get("split") or "test"
    level = 1.0 - float(boot.get("alpha", 0.05))
    lines = [f"## Performance on the {cell(split)} split at the frozen operating point", ""]
    if not metrics:
        return [*lines, f"Metrics: {NOT_MEASURED}.", ""]
    n, prev = metrics.get("n"), metrics.get("prevalence")
    lines.append(
        f"{num(n)} images, {names[1]} share {num(prev)}, threshold {num(metrics.get('threshold'), 4)}."
    )
    if ci:
        unit = boot.get("unit")
        how = {"group": boot.get("units") or "whole groups resampled", "row": "images resampled"}.get(
            unit, "resampling unit not recorded"
        )
        lines.append(
            f"Intervals: {level:.0%} percentile bootstrap, {num(boot.get('n_boot'))} resamples, {how}"
            + (
                f" ({num(boot.get('n_units'))} units)"
                if boot.get("n_units") is not None and not boot.get("units")  # the words count them
                else ""
            )
            + (
                f", {num(boot.get('n_redrawn'))} resamples lacking a class redrawn"
                if boot.get("n_redrawn")
                else ""
            )
            + "."
        )
    else:
        lines.append(f"Confidence intervals: {NOT_MEASURED}.")
    lines += ["", f"| Metric | Value | {level:.0%} CI |", "|---|---:|---:|"]
    for key, label, dec in _METRIC_ROWS:
        interval = ci.get(key)
        ci_text = f"{num(interval[0], dec)} – {num(interval[1], dec)}" if interval else NOT_MEASURED
        lines.append(f"| {label} | {num(metrics.get(key), dec)} | {ci_text} |")
    lines += ["", "Confusion matrix (rows: true class; columns: predicted class):", ""]
    if all(k in metrics for k in ("tn", "fp", "fn", "tp")):
        neg, pos = (cell(n) for n in names)
        lines += [
            f"| | Predicted {neg} | Predicted {pos} |",
            "|---|---:|---:|",
            f"| **{capitalised(neg)}** | {num(metrics['tn'])} (TN) | {num(metrics['fp'])} (FP) |",
            f"| **{capitalised(pos)}** | {num(metrics['fn'])} (FN) | {num(metrics['tp'])} (TP) |",
        ]
    else:
        lines.append(f"Confusion matrix: {NOT_MEASURED}.")
    return [*lines, ""]


def _calibration_section(cal: Mapping[str, Any]) -> list[str]:
    lines = ["## Calibration", ""]
    if not cal or cal.get("ece") is None:
        return [*lines, f"Calibration: {NOT_MEASURED}.", ""]
    bins = cal.get("n_bins")
    lines += [
        f"- **Expected calibration error (ECE):** {num(cal['ece'])}"
        + (f" ({bins} equal-width bins, weighted by bin count)" if bins else ""),
        f"- **Maximum calibration error (MCE):** {num(cal.get('mce'))}",
        f"- **Brier score:** {num(cal.get('brier'))}",
        "",
        "Scores are not guaranteed to be probabilities; read them as a ranking unless ECE is small.",
    ]
    return [*lines, ""]


def _gradcam_section(gc: Mapping[str, Any]) -> list[str]:
    lines = ["## Grad-CAM localisation", ""]
    if not gc:
        return [*lines, f"Localisation: {NOT_MEASURED}.", ""]
    n_img, n_mask = gc.get("n_images"), gc.get("n_with_mask")
    lines.append(
        f"Heatmaps for {num(n_img)} test images"
        + (f", {num(n_mask)} with a lesion mask." if n_mask is not None else ".")
    )
    if n_mask == 0 or (gc.get("energy_in_mask") is None and gc.get("pointing_game") is None):
        lines.append(f"Localisation against lesion masks: {NOT_MEASURED} (no masks available).")
    else:
        lines += [
            "",
            f"- **Energy in mask** (mean share of heatmap energy inside the lesion mask): "
            f"{num(gc.get('energy_in_mask'))}",
            f"- **Pointing game** (share of images whose heatmap peak lies in the mask): "
            f"{num(gc.get('pointing_game'))}",
        ]
    return [*lines, ""]


def render_model_card(info: Mapping[str, Any]) -> str:
    """The model card as Markdown; see the module docstring for the keys of ``info``."""
    model = _section(info, "model")
    if not model.get("name"):
        raise ConfigError("model card: info['model']['name'] is required (the registered model name)")
    data = _section(info, "data")
    title = f"# Model card: {cell(model['name'])}" + (
        f" v{cell(model['version'])}" if model.get("version") else ""
    )
    lines = [title, ""]
    if data.get("synthetic"):
        lines += [
            "> **Warning: trained and evaluated on synthetic demo images.** The numbers below test the "
            "pipeline, not melanoma detection; they say nothing about clinical performance.",
            "",
        ]
    task = str(_section(info, "labels").get("task") or "malignant")
    names = label_info.class_names(task)
    lines += ["## Intended use", "", intended_use(task), "", "### Out of scope", ""]
    lines += [f"- {item}" for item in OUT_OF_SCOPE]
    lines.append("")
    lines += _model_section(model)
    lines += _data_section(data, names)
    lines += _labels_section(_section(info, "labels"))
    lines += _protocol_section(_section(info, "protocol"))
    lines += _operating_point_section(_section(info, "operating_point"), names)
    lines += _metrics_section(info, names)
    lines += subgroup_section(info.get("subgroups"), names)
    lines += _calibration_section(_section(info, "calibration"))
    lines += _gradcam_section(_section(info, "gradcam"))
    lines += ["## Known limitations", ""]
    lines += [f"- {item}" for item in [*STANDING_LIMITATIONS, *(info.get("limitations") or [])]]
    logger.debug("rendered model card for %s", model["name"])
    return "\n".join(lines) + "\n"
