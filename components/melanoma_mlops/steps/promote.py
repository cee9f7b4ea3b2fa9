"""Pipeline step 9, promote: the fair gate against the champion, recorded everywhere a user looks.

The candidate (the version ``register`` just made ``challenger``) and the current ``champion`` are
scored through their registered pyfuncs on the same test manifest, with 95% bootstrap intervals by
group (:mod:`melanoma_mlops.registry.scoring`); the pure
:func:`melanoma_mlops.registry.gate.decide` applies the evidence minimums and the limits to the
intervals' lower bounds; the decision (intervals included) becomes version tags ``gate.*``, a nested
MLflow run, a Markdown report, and with ``auto_promote`` the alias move.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from melanoma_mlops import run_note, tracking
from melanoma_mlops.artifacts import CHAMPION, EVALUATION_FILE, GATE_DECISION_FILE, GATE_REPORT_FILE
from melanoma_mlops.config import GateConfig, TrainingConfig
from melanoma_mlops.data import manifest
from melanoma_mlops.evaluation import metrics
from melanoma_mlops.registry import champion as champions
from melanoma_mlops.registry import lookup, scoring, stamp
from melanoma_mlops.registry.gate import (
    CONFIDENCE,
    Candidate,
    ChampionComparison,
    Decision,
    GateLimits,
    decide,
)
from melanoma_mlops.registry.report import fmt, gate_markdown

logger = logging.getLogger(__name__)

# The candidate's pyfunc re-scores the test set; beyond this AUC gap from the evaluate step the
# served artifact does not reproduce its own evaluation (train/serve skew) and we say so loudly.
REPRODUCTION_TOLERANCE = 0.01


def gate_step(
    evaluation_dir: str,
    test_manifest: str,
    *,
    parent_run_id: str,
    candidate_version: str,
    gate: GateConfig,
    training: TrainingConfig,
) -> dict[str, Any]:
    """Gate the candidate against the evidence minimums, the limits on the lower bounds of its
    95% intervals, and the champion on the same test set (paired).

    Returns the decision (JSON-serialisable; :func:`gate_markdown` renders it). With
    ``auto_promote`` a passing candidate becomes ``champion``; without, the gate only recommends.
    ``image_size`` is the candidate's training input size, checked against its contract; each model
    is scored at its own size by its own pyfunc.
    """
    limits, version = limits_of(gate), str(candidate_version)
    image_size, batch_size = training.image_size, training.batch_size
    tracking.log_parent_params(parent_run_id, gate.as_params())
    client = MlflowClient()
    with tracking.step_run(parent_run_id, "promote", _params(gate)) as run_id:
        evaluation = json.loads((Path(evaluation_dir) / EVALUATION_FILE).read_text())
        test = manifest.read(test_manifest)
        candidate_mv = lookup.get_version(client, gate.model_name, version)
        champions.refuse_leaky(client, candidate_mv)
        scores, cand = _score_candidate(gate.model_name, version, test, evaluation, image_size, batch_size)
        champion_mv, champ = _score_champion(client, gate.model_name, version, test, scores, batch_size)
        verdict = decide(
            _candidate(version, cand, evaluation), _comparison(champ), limits, auto_promote=gate.auto_promote
        )
        decision = _decision_record(verdict, gate, candidate_mv, champion_mv, champ, cand, evaluation, test)
        decision = metrics.json_safe(decision | {"run_id": run_id, "pipeline_run_id": parent_run_id})
        _record(client, decision, parent_run_id)
        if verdict.promote:
            reason = f"gate {verdict.reason} (pipeline run {parent_run_id})"
            extra = {"gate_passed": "true"}
            champions.set_champion(
                client, gate.model_name, version, action="auto-promote", reason=reason, extra=extra
            )
            decision["promoted"] = True
        logger.info(
            "gate for %s v%s: %s (%s)", gate.model_name, version, verdict.action.upper(), verdict.reason
        )
        mlflow.log_text(gate_markdown(decision), f"promotion/{GATE_REPORT_FILE}")
        mlflow.log_dict(decision, f"promotion/{GATE_DECISION_FILE}")
        tracking.log_parent_text(parent_run_id, gate_markdown(decision), f"promotion/{GATE_REPORT_FILE}")
    run_note.write(parent_run_id, decision)  # the parent's description: data, split, metrics, gate
    # The gate is the pipeline's last step: the parent run ends with it, not with register.
    tracking.finish_pipeline_run(parent_run_id)
    return decision


def limits_of(gate: GateConfig) -> GateLimits:
    return GateLimits(
        min_auc=gate.min_auc,
        min_sensitivity=gate.min_sensitivity,
        min_specificity=gate.min_specificity,
        max_auc_drop=gate.max_auc_drop,
        min_test_positives=gate.min_test_positives,
        min_test_negatives=gate.min_test_negatives,
    )


def _params(gate: GateConfig) -> dict[str, Any]:
    """The gate's settings as MLflow params ``gate_<field>`` (the model name is logged by register)."""
    return {f"gate_{k}": v for k, v in gate.as_params().items() if k != "model_name"}


def _score_candidate(
    model_name: str,
    version: str,
    test: pd.DataFrame,
    evaluation: dict[str, Any],
    image_size: int,
    batch_size: int,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The registered pyfunc's scores on the test set, and its figures with 95% intervals."""
    loaded = scoring.load_version(model_name, version)
    contract_size = (loaded.metadata.metadata or {}).get("input", {}).get("image_size")
    if contract_size is not None and int(contract_size) != int(image_size):
        logger.warning(
            "candidate contract image_size %s differs from the pipeline's %s", contract_size, image_size
        )
    logger.info("gate: scoring candidate v%s on %d test images", version, len(test))
    scores = scoring.score(loaded, test["image_uri"].astype(str), batch_size)
    y = test["label"].to_numpy()
    cand = scoring.with_intervals(y, scores, float(evaluation["threshold"]), scoring.resampling_units(test))
    eval_auc = float(evaluation["test"]["auc_roc"])
    if abs(cand["auc_roc"] - eval_auc) > REPRODUCTION_TOLERANCE:
        logger.warning(
            "the registered pyfunc scores AUC %.4f on the test set but the evaluate step measured %.4f: "
            "serving does not reproduce evaluation (preprocessing skew?)",
            cand["auc_roc"],
            eval_auc,
        )
    return scores, cand


def _score_champion(
    client: MlflowClient,
    model_name: str,
    candidate_version: str,
    test: pd.DataFrame,
    cand_scores: np.ndarray,
    batch_size: int,
) -> tuple[Any, dict[str, Any] | None]:
    """(champion version, its comparison on the same test images), or (None, None) without one."""
    champion_mv = lookup.alias_version(client, model_name, CHAMPION)
    if champion_mv is None or str(champion_mv.version) == candidate_version:
        return None, None  # no champion, or re-gating the champion itself: nothing to compare against
    logger.info("gate: scoring champion v%s on the same test images", champion_mv.version)
    return champion_mv, scoring.champion_on_same_test(client, champion_mv, test, cand_scores, batch_size)


def _candidate(version: str, cand: dict[str, Any], evaluation: dict[str, Any]) -> Candidate:
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
    )


def _comparison(champ: dict[str, Any] | None) -> ChampionComparison | None:
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


def _decision_record(
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
    record: dict[str, Any] = {
        "model_name": gate.model_name,
        "candidate_version": str(candidate_mv.version),
        "passed": verdict.passed,
        "promoted": False,
        "action": verdict.action,
        "reason": verdict.reason,
        "auto_promote": bool(gate.auto_promote),
        "limits": {k: v for k, v in gate.as_params().items() if k not in ("auto_promote", "model_name")},
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


def _tags(decision: dict[str, Any], parent_run_id: str) -> dict[str, str]:
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
    }


def _record(client: MlflowClient, decision: dict[str, Any], parent_run_id: str) -> None:
    """The decision as version tags, step-run tags and metrics (step run and parent run)."""
    tags = _tags(decision, parent_run_id)
    for key, value in tags.items():
        client.set_model_version_tag(decision["model_name"], decision["candidate_version"], key, value)
    mlflow.set_tags(tags)
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
    tracking.log_metrics(
        {k: v for k, v in values.items() if v is not None and math.isfinite(v)}, parent_run_id
    )
