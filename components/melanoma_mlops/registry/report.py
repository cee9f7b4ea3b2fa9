"""The gate's decision as a Markdown report (the KFP ``Markdown`` artifact and the MLflow run's gate.md)."""

from __future__ import annotations

import math
from typing import Any


def fmt(value: float | None, digits: int = 4) -> str:
    """A figure for people: ``n/a`` when missing or not finite."""
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def gate_markdown(decision: dict[str, Any]) -> str:
    """The decision as a Markdown report (the KFP ``Markdown`` artifact and the MLflow run's gate.md)."""
    name, version = decision["model_name"], decision["candidate_version"]
    verdict = {
        "promoted": "PASSED - promoted to @champion",
        "recommended": "PASSED - recommended for promotion (auto-promotion is off)",
        "rejected": "FAILED - stays @challenger, champion unchanged",
    }[decision["action"]]
    limits = decision["limits"]
    lines = [
        f"# Promotion gate: {name} version {version}",
        "",
        f"**{verdict}**",
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
    cand, champ = decision["candidate"], decision["champion"]
    lines += [
        "",
        f"## Same test set ({decision['n_test']} images, fingerprint `{decision['test_fingerprint'][:12]}`)",
        "",
        "Each model is the registered pyfunc, fed raw image bytes, at its own frozen threshold.",
        "",
        "| | version | AUC | sensitivity | specificity | threshold |",
        "|---|---|---|---|---|---|",
        f"| candidate | {version} | {fmt(cand['auc'])} | {fmt(cand['sensitivity'])} | "
        f"{fmt(cand['specificity'])} | {cand['threshold']:.4g} |",
    ]
    if champ and "error" not in champ:
        lines.append(
            f"| champion | {champ['version']} | {fmt(champ['auc'])} | {fmt(champ['sensitivity'])} | "
            f"{fmt(champ['specificity'])} | {champ['threshold']:.4g} |"
        )
        overlap = champ.get("train_overlap")
        lines += [
            "",
            f"AUC compared on {champ['compared_on']}: candidate {fmt(champ['candidate_compare_auc'])}, "
            f"champion {fmt(champ['compare_auc'])}, delta {champ['auc_delta']:+.4f} "
            f"(allowed drop {limits['max_auc_drop']}).",
            "",
            "Champion training images in this test set: "
            + ("unknown (its training manifest was not found)" if overlap is None else str(overlap))
            + ".",
        ]
    elif champ:
        lines += ["", f"Champion version {champ['version']} could not be scored: {champ['error']}"]
    else:
        lines += ["", "No champion yet: only the absolute limits apply."]
    lines += [
        "",
        f"Candidate AUC measured by the evaluate step: {fmt(cand['auc_evaluate_step'])} "
        "(the served pyfunc should reproduce it).",
        "",
        f"Limits: AUC >= {limits['min_auc']}, sensitivity >= {limits['min_sensitivity']}, "
        f"AUC drop vs champion <= {limits['max_auc_drop']}.",
    ]
    if decision["action"] == "recommended":
        lines += [
            "",
            f'To promote: `melanoma-mlops promote --version {version} --reason "..."`',
        ]
    elif decision["action"] == "rejected":
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
    return "\n".join(lines)
