"""The gate's decision as a Markdown report (the KFP ``Markdown`` artifact and the MLflow run's gate.md)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

VERDICTS = {
    "promoted": "PASSED - promoted to @champion",
    "recommended": "PASSED - recommended for promotion (auto-promotion is off)",
    "held": "HELD - not promoted automatically (too few test images, or worse than the champion on a "
    "subgroup: see the reason); stays @challenger, champion unchanged",
    "rejected": "FAILED - stays @challenger, champion unchanged",
}


def fmt(value: float | None, digits: int = 4) -> str:
    """A figure for people: ``n/a`` when missing or not finite."""
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def fmt_ci(ci: Sequence[float] | None, digits: int = 4, *, signed: bool = False) -> str:
    """A 95% interval for people: ``[95% CI 0.8123, 0.9345]`` (``n/a`` when missing)."""
    if ci is None or len(ci) != 2 or not all(v is not None and math.isfinite(v) for v in ci):
        return "[95% CI n/a]"
    spec = f"+.{digits}f" if signed else f".{digits}f"
    return f"[95% CI {ci[0]:{spec}}, {ci[1]:{spec}}]"


def gate_markdown(decision: dict[str, Any]) -> str:
    """The decision as a Markdown report (the KFP ``Markdown`` artifact and the MLflow run's gate.md)."""
    name, version = decision["model_name"], decision["candidate_version"]
    lines = [
        f"# Promotion gate: {name} version {version}",
        "",
        f"**{VERDICTS[decision['action']]}**",
        "",
        f"{decision['reason']}",
        "",
        "## Checks",
        "",
        "| check | result | detail |",
        "|---|---|---|",
    ]
    lines += [
        f"| {c['name']} | {'pass' if c['passed'] else 'FAIL'} | {c['detail']} |" for c in decision["checks"]
    ]
    lines += _same_test_section(decision)
    lines += _champion_lines(decision["champion"])
    lines += _subgroup_lines(decision)
    lines += _limits_and_next_steps(decision)
    return "\n".join(lines)


def _row(who: str, version: str, figures: dict[str, Any]) -> str:
    cells = [
        f"{fmt(figures[k])} {fmt_ci(figures.get(f'{k}_ci'))}" if figures.get(f"{k}_ci") else fmt(figures[k])
        for k in ("auc", "sensitivity", "specificity")
    ]
    return f"| {who} | {version} | {' | '.join(cells)} | {figures['threshold']:.4g} |"


def _same_test_section(decision: dict[str, Any]) -> list[str]:
    cand, champ = decision["candidate"], decision["champion"]
    boot = decision.get("bootstrap") or {}
    negative, positive = decision.get("class_names") or ("benign", "malignant")
    lines = [
        "",
        f"## Same test set ({decision['n_test']} images: {cand.get('n_positive', '?')} {positive}, "
        f"{cand.get('n_negative', '?')} {negative}; fingerprint `{decision['test_fingerprint'][:12]}`)",
        "",
        "Each model is the registered pyfunc, fed raw image bytes, at its own frozen threshold. "
        f"Intervals: 95% percentile bootstrap, {boot.get('n_boot', '?')} resamples of "
        f"{boot.get('n_units', '?')} {boot.get('unit', '?')}s (images of one lesion/patient move together).",
        "",
        "| | version | AUC | sensitivity | specificity | threshold |",
        "|---|---|---|---|---|---|",
        _row("candidate", str(decision["candidate_version"]), cand),
    ]
    if champ and "error" not in champ:
        lines.append(_row("champion", str(champ["version"]), champ))
    return lines


def _champion_lines(champ: dict[str, Any] | None) -> list[str]:
    if not champ:
        return ["", "No champion yet: only the absolute limits apply."]
    if "error" in champ:
        return ["", f"Champion version {champ['version']} could not be scored: {champ['error']}"]
    overlap = champ.get("train_overlap")
    return [
        "",
        f"AUC compared on {champ['compared_on']}: candidate {fmt(champ['candidate_compare_auc'])}, "
        f"champion {fmt(champ['compare_auc'])}, paired difference {champ['auc_delta']:+.4f} "
        f"{fmt_ci(champ.get('auc_delta_ci'), signed=True)} (the same resampled groups for both models).",
        "",
        "Champion training images in this test set: "
        + ("unknown (its training manifest was not found)" if overlap is None else str(overlap))
        + ".",
    ]


def _delta(row: dict[str, Any], key: str) -> str:
    value = row.get(f"{key}_delta")
    if value is None:
        return "–"
    return f"{value:+.4f} {fmt_ci(row.get(f'{key}_delta_ci'), signed=True)}"


def _subgroup_lines(decision: dict[str, Any]) -> list[str]:
    """The per-subgroup comparison with the champion: paired differences candidate − champion."""
    champ = decision["champion"] or {}
    rows = champ.get("slices") or []
    if not rows:
        return []
    negative, positive = decision.get("class_names") or ("benign", "malignant")
    margin = decision["limits"].get("max_slice_drop", "?")
    lines = [
        "",
        "## By subgroup (candidate − champion, paired on the same images)",
        "",
        f"Judged where a subgroup has at least {(decision.get('slice_minimum') or {}).get('positives', '?')} "
        f"{positive} and {(decision.get('slice_minimum') or {}).get('negatives', '?')} {negative} images; "
        f"the lower 95% bound of each difference must be >= -{margin}.",
        "",
        f"| subgroup | {positive} | {negative} | AUC difference | sensitivity difference |",
        "|---|---:|---:|---|---|",
    ]
    lines += [
        f"| {r['name']} | {r['n_positive']} | {r['n_negative']} | {_delta(r, 'auc')} | "
        f"{_delta(r, 'sensitivity')} |"
        for r in rows
    ]
    return lines


def _limits_and_next_steps(decision: dict[str, Any]) -> list[str]:
    limits, cand, version = decision["limits"], decision["candidate"], decision["candidate_version"]
    negative, positive = decision.get("class_names") or ("benign", "malignant")
    lines = [
        "",
        f"Candidate AUC measured by the evaluate step: {fmt(cand['auc_evaluate_step'])} "
        f"{fmt_ci(cand.get('auc_ci_evaluate_step'))} (the served pyfunc should reproduce it).",
        "",
        f"Limits: at least {limits.get('min_test_positives', '?')} {positive} and "
        f"{limits.get('min_test_negatives', '?')} {negative} test images; lower 95% bounds of AUC >= "
        f"{limits['min_auc']}, sensitivity >= {limits['min_sensitivity']}, specificity >= "
        f"{limits.get('min_specificity', '?')}; paired AUC difference vs the champion: lower 95% bound "
        f">= -{limits['max_auc_drop']}; per subgroup, paired AUC and sensitivity differences: lower 95% "
        f"bounds >= -{limits.get('max_slice_drop', '?')}.",
    ]
    if decision["action"] == "recommended":
        lines += ["", f'To promote: `melanoma-mlops promote --version {version} --reason "..."`']
    elif decision["action"] in ("rejected", "held"):
        lines += [
            "",
            "A deliberate override needs a written justification: "
            f'`melanoma-mlops promote --version {version} --reason "..." --force --force-reason "..."`',
        ]
    lines += [
        "",
        f"MLflow: pipeline run `{decision['pipeline_run_id']}`, promote run `{decision['run_id']}`.",
        "",
    ]
    return lines
