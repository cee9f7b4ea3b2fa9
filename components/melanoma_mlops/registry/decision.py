"""The promotion gate's decision as a record: the JSON every consumer reads (``gate_decision.json``,
the Markdown report, the CLI), its ``gate.*`` version tags and its ``gate/*`` metrics.

Built from the pure verdict (:func:`melanoma_mlops.registry.gate.decide`) and the scored figures
(:mod:`melanoma_mlops.registry.scoring`); nothing here writes to MLflow: the promote step records
the tags and metrics this module composes.
"""

from __future__ import annotations

import math
from typing import Any

from melanoma_mlops.config import GateConfig
from melanoma_mlops.data import manifest
from melanoma_mlops.evaluation.subgroups import SliceSpec
from melanoma_mlops.registry import stamp
from melanoma_mlops.registry.gate import (
    CONFIDENCE,
    Candidate,
    ChampionComparison,
    Decision,
    GateLimits,
    SliceComparison,
)
from melanoma_mlops.registry.report import fmt


def slice_spec_of(evaluation: dict[str, Any]) -> SliceSpec:
    """How the evaluate step cut and judged the subgroups (its record), so the gate compares the
    same slices; the defaults for an evaluation recorded before subgroups were."""
    record = evaluation.get("subgroups")
    return SliceSpec.from_record(record) if record else SliceSpec()


def limits_of(gate: GateConfig, spec: SliceSpec | None = None) -> GateLimits:
    """The gate's limits from its configuration (the pure decision takes no config object); a
    subgroup needs the evaluate step's minimum of cases (``spec``) to be compared."""
    spec = spec or SliceSpec()
    return GateLimits(
        min_auc=gate.min_auc,
        min_sensitivity=gate.min_sensitivity,
        min_specificity=gate.min_specificity,
        max_auc_drop=gate.max_auc_drop,
        min_test_positives=gate.min_test_positives,
        min_test_negatives=gate.min_test_negatives,
        max_slice_drop=gate.max_slice_drop,
        min_slice_positives=spec.min_positives,
        min_slice_negatives=spec.min_negatives,
    )


def candidate_of(version: str, cand: dict[str, Any], evaluation: dict[str, Any]) -> Candidate:
    """The gate's view of the candidate: its scored figures at its evaluate step's frozen threshold."""
    return Candidate(
        version,
        auc=cand["auc_roc"],
        sensitivity=cand["sensitivity"],
        specificity=cand["specificity"],
        threshold=float(evaluation["threshold"]),
        auc_ci=tuple(cand["auc_roc_ci"]),
        sensitivity_ci=tuple(cand["sensitivity_ci"]),
        specificity_ci=tuple(cand["specificity_ci"]),
        n_positive=int(cand["tp"] + cand["fn"]),
        n_negative=int(cand["tn"] + cand["fp"]),
        class_names=tuple(evaluation.get("class_names") or ("benign", "malignant")),
    )


def _interval(values: Any) -> tuple[float, float] | None:
    return None if values is None else (float(values[0]), float(values[1]))


def slices_of(rows: list[dict[str, Any]]) -> tuple[SliceComparison, ...]:
    """The gate's view of the per-subgroup comparison
    (:func:`melanoma_mlops.registry.subgroups.compare_slices`)."""
    return tuple(
        SliceComparison(
            r["name"],
            int(r["n_positive"]),
            int(r["n_negative"]),
            r.get("auc_delta"),
            _interval(r.get("auc_delta_ci")),
            r.get("sensitivity_delta"),
            _interval(r.get("sensitivity_delta_ci")),
        )
        for r in rows
    )


def comparison_of(champ: dict[str, Any] | None) -> ChampionComparison | None:
    """The gate's view of the champion's paired comparison (None: no champion to compare with)."""
    if champ is None:
        return None
    if "error" in champ:
        return ChampionComparison(champ["version"], error=champ["error"])
    return ChampionComparison(
        champ["version"],
        compare_auc=champ["compare_auc"],
        candidate_compare_auc=champ["candidate_compare_auc"],
        delta_ci=tuple(champ["auc_delta_ci"]),
        compared_on=champ["compare_note"],
        slices=slices_of(champ.get("slices") or []),
    )


def _figures(m: dict[str, Any], threshold: float) -> dict[str, Any]:
    """AUC, sensitivity, specificity with their intervals, as the record and the report show them."""
    return {
        "threshold": threshold,
        "auc": m["auc_roc"],
        "auc_ci": list(m["auc_roc_ci"]),
        "sensitivity": m["sensitivity"],
        "sensitivity_ci": list(m["sensitivity_ci"]),
        "specificity": m["specificity"],
        "specificity_ci": list(m["specificity_ci"]),
    }


def decision_record(
    verdict: Decision,
    gate: GateConfig,
    candidate_mv: Any,
    champion_mv: Any,
    champ: dict[str, Any] | None,
    cand: dict[str, Any],
    evaluation: dict[str, Any],
    test: Any,
) -> dict[str, Any]:
    """The decision as the JSON every consumer reads (gate_decision.json, the Markdown, the CLI)."""
    spec = slice_spec_of(evaluation)
    record: dict[str, Any] = {
        "model_name": gate.model_name,
        "candidate_version": str(candidate_mv.version),
        "passed": verdict.passed,
        "promoted": False,
        "action": verdict.action,
        "reason": verdict.reason,
        "auto_promote": bool(gate.auto_promote),
        "limits": {k: v for k, v in gate.as_params().items() if k not in ("auto_promote", "model_name")},
        "slice_minimum": {"positives": spec.min_positives, "negatives": spec.min_negatives},
        "class_names": list(evaluation.get("class_names") or ("benign", "malignant")),
        "confidence": CONFIDENCE,
        "bootstrap": cand["bootstrap"],
        "checks": [c.as_dict() for c in verdict.checks],
        "candidate": {
            "version": str(candidate_mv.version),
            **_figures(cand, float(evaluation["threshold"])),
            "n_positive": int(cand["tp"] + cand["fn"]),
            "n_negative": int(cand["tn"] + cand["fp"]),
            "auc_evaluate_step": float(evaluation["test"]["auc_roc"]),
            "auc_ci_evaluate_step": (evaluation.get("ci") or {}).get("auc_roc"),
            "data_fingerprint": candidate_mv.tags.get("data_fingerprint", ""),
        },
        "champion": None,
        "n_test": len(test),
        "test_fingerprint": manifest.fingerprint(test),
        "decided_at": stamp.now(),
    }
    if champ is not None and "error" in champ:
        record["champion"] = {"version": champ["version"], "error": champ["error"]}
    elif champ is not None:
        record["champion"] = {
            "version": champ["version"],
            **_figures(champ["metrics"], champ["threshold"]),
            "train_overlap": champ["train_overlap"],
            "compared_on": champ["compare_note"],
            "compare_auc": champ["compare_auc"],
            "candidate_compare_auc": champ["candidate_compare_auc"],
            "auc_delta": champ["auc_delta"],
            "auc_delta_ci": list(champ["auc_delta_ci"]),
            "slices": champ.get("slices") or [],
            "data_fingerprint": champion_mv.tags.get("data_fingerprint", "") if champion_mv else "",
        }
    return record


def _interval_tags(prefix: str, figures: dict[str, Any], keys: tuple[str, ...]) -> dict[str, str]:
    """``gate.<prefix><key>`` and its ``_ci_low`` / ``_ci_high`` tags for each key."""
    tags: dict[str, str] = {}
    for key in keys:
        low, high = figures.get(f"{key}_ci") or (None, None)
        tags |= {
            f"gate.{prefix}{key}": fmt(figures.get(key), 6),
            f"gate.{prefix}{key}_ci_low": fmt(low, 6),
            f"gate.{prefix}{key}_ci_high": fmt(high, 6),
        }
    return tags


def decision_tags(decision: dict[str, Any], parent_run_id: str) -> dict[str, str]:
    """The decision as ``gate.*`` tags: the figures with the intervals the limits were applied to."""
    champ = decision["champion"] or {}
    cand = decision["candidate"]
    figures = ("auc", "sensitivity", "specificity")
    overlap = champ.get("train_overlap")
    return {
        "gate.passed": str(decision["passed"]).lower(),
        "gate.action": decision["action"],
        "gate.reason": decision["reason"][:4900],
        "gate.decided_at": decision["decided_at"],
        "gate.run_id": decision["run_id"],
        "gate.pipeline_run_id": parent_run_id,
        "gate.confidence": str(decision["confidence"]),
        **_interval_tags("candidate_", cand, figures),
        "gate.candidate_threshold": f"{cand['threshold']:.6g}",
        "gate.candidate_auc_evaluate_step": fmt(cand["auc_evaluate_step"], 6),
        "gate.n_test_positive": str(cand["n_positive"]),
        "gate.n_test_negative": str(cand["n_negative"]),
        "gate.champion_version": champ.get("version", "none"),
        "gate.champion_auc_same_test": fmt(champ.get("auc"), 6),
        "gate.champion_sensitivity_same_test": fmt(champ.get("sensitivity"), 6),
        "gate.champion_threshold": fmt(champ.get("threshold"), 6),
        **_interval_tags("", champ, ("auc_delta",)),
        "gate.champion_train_overlap": "unknown" if overlap is None else str(overlap),
        **{f"gate.{k}": str(v) for k, v in decision["limits"].items()},
        "gate.n_test": str(decision["n_test"]),
        "gate.test_fingerprint": decision["test_fingerprint"],
        **_subgroup_tags(decision),
    }


def _subgroup_check(decision: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in decision["checks"] if c["name"] == "subgroups"), {})


def worse_subgroups(decision: dict[str, Any]) -> list[str]:
    """The subgroups on which the candidate was found worse than the champion (beyond the margin)."""
    margin = -float(decision["limits"].get("max_slice_drop", 0.05))
    minimum = decision.get("slice_minimum") or {"positives": 0, "negatives": 0}
    worse = []
    for row in (decision["champion"] or {}).get("slices") or []:
        if row["n_positive"] < minimum["positives"] or row["n_negative"] < minimum["negatives"]:
            continue
        lows = [(row.get(f"{k}_delta_ci") or [float("nan")])[0] for k in ("auc", "sensitivity")]
        if not all(v is not None and math.isfinite(v) and v >= margin for v in lows):
            worse.append(row["name"])
    return worse


def _subgroup_tags(decision: dict[str, Any]) -> dict[str, str]:
    """``gate.subgroups`` (passed / failed / not compared) and the subgroups found worse."""
    check = _subgroup_check(decision)
    compared = check.get("value") is not None
    verdict = ("passed" if check.get("passed") else "failed") if compared else "not compared"
    return {"gate.subgroups": verdict, "gate.subgroups_worse": ", ".join(worse_subgroups(decision)) or "none"}


def decision_metrics(decision: dict[str, Any]) -> dict[str, float]:
    """The decision's figures as ``gate/*`` metrics (finite values only: MLflow refuses NaN)."""
    champ, cand = decision["champion"] or {}, decision["candidate"]
    values = {
        "gate/passed": float(decision["passed"]),
        "gate/candidate_auc": cand["auc"],
        "gate/candidate_auc_ci_low": cand["auc_ci"][0],
        "gate/candidate_sensitivity": cand["sensitivity"],
        "gate/candidate_sensitivity_ci_low": cand["sensitivity_ci"][0],
        "gate/candidate_specificity": cand["specificity"],
        "gate/candidate_specificity_ci_low": cand["specificity_ci"][0],
    }
    if champ.get("auc") is not None:
        values |= {
            "gate/champion_auc_same_test": champ["auc"],
            "gate/auc_delta": champ["auc_delta"],
            "gate/auc_delta_ci_low": champ["auc_delta_ci"][0],
        }
    check = _subgroup_check(decision)
    if check.get("value") is not None:
        values |= {
            "gate/subgroups_passed": float(bool(check["passed"])),
            "gate/subgroup_delta_ci_low_min": check["value"],
        }
    return {k: v for k, v in values.items() if v is not None and math.isfinite(v)}
