"""Pipeline step 9, promote: the fair gate against the champion, recorded everywhere a user looks.

The candidate (the version ``register`` just made ``challenger``) and the current ``champion`` are
scored through their registered pyfuncs on the same test manifest
(:mod:`melanoma_mlops.registry.scoring`); the pure :func:`melanoma_mlops.registry.gate.decide`
applies the limits; the decision becomes version
tags ``gate.*``, a nested MLflow run, a Markdown report, and with ``auto_promote`` the alias move.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from melanoma_mlops import run_note, tracking
from melanoma_mlops.artifacts import CHAMPION, EVALUATION_FILE, GATE_DECISION_FILE, GATE_REPORT_FILE
from melanoma_mlops.config import GateConfig
from melanoma_mlops.data import manifest
from melanoma_mlops.evaluation import metrics
from melanoma_mlops.registry import champion as champions
from melanoma_mlops.registry import scoring
from melanoma_mlops.registry.gate import Candidate, ChampionComparison, Decision, GateLimits, decide
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
    image_size: int,
    batch_size: int,
) -> dict[str, Any]:
    """Gate the candidate against absolute limits and the champion on the same test set.

    Returns the decision (JSON-serialisable; :func:`gate_markdown` renders it). With
    ``auto_promote`` a passing candidate becomes ``champion``; without, the gate only recommends.
    ``image_size`` is the candidate's training input size, checked against its contract; each model
    is scored at its own size by its own pyfunc.
    """
    limits = GateLimits(gate.min_auc, gate.min_sensitivity, gate.max_auc_drop)
    model_name, candidate_version = gate.model_name, str(candidate_version)
    params = {
        "gate_min_auc": gate.min_auc,
        "gate_min_sensitivity": gate.min_sensitivity,
        "gate_max_auc_drop": gate.max_auc_drop,
        "gate_auto_promote": gate.auto_promote,
    }
    client = MlflowClient()
    with tracking.step_run(parent_run_id, "promote", params) as run_id:
        evaluation = json.loads((Path(evaluation_dir) / EVALUATION_FILE).read_text())
        test = manifest.read(test_manifest)
        y = test["label"].to_numpy()
        candidate_mv = champions.get_version(client, model_name, candidate_version)
        champions.refuse_leaky(client, candidate_mv)
        loaded = scoring.load_version(model_name, candidate_version)
        contract_size = (loaded.metadata.metadata or {}).get("input", {}).get("image_size")
        if contract_size is not None and int(contract_size) != int(image_size):
            logger.warning(
                "candidate contract image_size %s differs from the pipeline's %s", contract_size, image_size
            )
        threshold = float(evaluation["threshold"])
        logger.info("gate: scoring candidate v%s on %d test images", candidate_version, len(test))
        cand_scores = scoring.score(loaded, test["image_uri"].astype(str), batch_size)
        cand = metrics.binary_metrics(y, cand_scores, threshold)
        eval_auc = float(evaluation["test"]["auc_roc"])
        if abs(cand["auc_roc"] - eval_auc) > REPRODUCTION_TOLERANCE:
            logger.warning(
                "the registered pyfunc scores AUC %.4f on the test set but the evaluate step measured %.4f: "
                "serving does not reproduce evaluation (preprocessing skew?)",
                cand["auc_roc"],
                eval_auc,
            )
        champion_mv = champions.alias_version(client, model_name, CHAMPION)
        if champion_mv is not None and str(champion_mv.version) == candidate_version:
            champion_mv = None  # re-gating the champion itself: nothing to compare against
        champ: dict[str, Any] | None = None
        if champion_mv is not None:
            logger.info("gate: scoring champion v%s on the same test images", champion_mv.version)
            champ = scoring.champion_on_same_test(client, champion_mv, test, cand_scores, batch_size)
        verdict = decide(
            Candidate(candidate_version, cand["auc_roc"], cand["sensitivity"], threshold),
            _comparison(champ),
            limits,
            auto_promote=gate.auto_promote,
        )
        decision = _decision_record(verdict, gate, candidate_mv, champion_mv, champ, cand, evaluation, test)
        decision |= {"run_id": run_id, "pipeline_run_id": parent_run_id}
        decision = metrics.json_safe(decision)
        _record(client, decision, parent_run_id)
        if verdict.promote:
            champions.set_champion(
                client,
                model_name,
                candidate_version,
                action="auto-promote",
                reason=f"gate {verdict.reason} (pipeline run {parent_run_id})",
                extra={"gate_passed": "true"},
            )
            decision["promoted"] = True
        logger.info(
            "gate for %s v%s: %s (%s)", model_name, candidate_version, verdict.action.upper(), verdict.reason
        )
        mlflow.log_text(gate_markdown(decision), f"promotion/{GATE_REPORT_FILE}")
        mlflow.log_dict(decision, f"promotion/{GATE_DECISION_FILE}")
        tracking.log_parent_text(parent_run_id, gate_markdown(decision), f"promotion/{GATE_REPORT_FILE}")
    run_note.write(parent_run_id, decision)  # the parent's description: data, split, metrics, gate
    # The gate is the pipeline's last step: the parent run ends with it, not with register.
    tracking.finish_pipeline_run(parent_run_id)
    return decision


def _comparison(champ: dict[str, Any] | None) -> ChampionComparison | None:
    if champ is None:
        return None
    if "error" in champ:
        return ChampionComparison(champ["version"], error=champ["error"])
    return ChampionComparison(
        champ["version"], champ["compare_auc"], champ["candidate_compare_auc"], champ["compare_note"]
    )


def _decision_record(
    verdict: Decision,
    gate: GateConfig,
    candidate_mv: Any,
    champion_mv: Any,
    champ: dict[str, Any] | None,
    cand: dict[str, float],
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
        "limits": {
            "min_auc": gate.min_auc,
            "min_sensitivity": gate.min_sensitivity,
            "max_auc_drop": gate.max_auc_drop,
        },
        "checks": [c.as_dict() for c in verdict.checks],
        "candidate": {
            "version": str(candidate_mv.version),
            "threshold": float(evaluation["threshold"]),
            "auc": cand["auc_roc"],
            "auc_evaluate_step": float(evaluation["test"]["auc_roc"]),
            "sensitivity": cand["sensitivity"],
            "specificity": cand["specificity"],
            "data_fingerprint": candidate_mv.tags.get("data_fingerprint", ""),
        },
        "champion": None,
        "n_test": len(test),
        "test_fingerprint": manifest.fingerprint(test),
        "decided_at": champions.now(),
    }
    if champ is not None and "error" in champ:
        record["champion"] = {"version": champ["version"], "error": champ["error"]}
    elif champ is not None:
        record["champion"] = {
            "version": champ["version"],
            "threshold": champ["threshold"],
            "auc": champ["metrics"]["auc_roc"],
            "sensitivity": champ["metrics"]["sensitivity"],
            "specificity": champ["metrics"]["specificity"],
            "train_overlap": champ["train_overlap"],
            "compared_on": champ["compare_note"],
            "compare_auc": champ["compare_auc"],
            "candidate_compare_auc": champ["candidate_compare_auc"],
            "auc_delta": champ["candidate_compare_auc"] - champ["compare_auc"],
            "data_fingerprint": champion_mv.tags.get("data_fingerprint", "") if champion_mv else "",
        }
    return record


def _record(client: MlflowClient, decision: dict[str, Any], parent_run_id: str) -> None:
    """The decision as version tags, step-run tags and metrics (step run and parent run)."""
    champ = decision["champion"] or {}
    cand = decision["candidate"]
    tags = {
        "gate.passed": str(decision["passed"]).lower(),
        "gate.action": decision["action"],
        "gate.reason": decision["reason"][:4900],
        "gate.decided_at": decision["decided_at"],
        "gate.run_id": decision["run_id"],
        "gate.pipeline_run_id": parent_run_id,
        "gate.candidate_auc": fmt(cand["auc"], 6),
        "gate.candidate_sensitivity": fmt(cand["sensitivity"], 6),
        "gate.candidate_specificity": fmt(cand["specificity"], 6),
        "gate.candidate_threshold": f"{cand['threshold']:.6g}",
        "gate.candidate_auc_evaluate_step": fmt(cand["auc_evaluate_step"], 6),
        "gate.champion_version": champ.get("version", "none"),
        "gate.champion_auc_same_test": fmt(champ.get("auc"), 6),
        "gate.champion_sensitivity_same_test": fmt(champ.get("sensitivity"), 6),
        "gate.champion_threshold": fmt(champ.get("threshold"), 6),
        "gate.auc_delta": fmt(champ.get("auc_delta"), 6),
        "gate.champion_train_overlap": "unknown"
        if champ.get("train_overlap") is None
        else str(champ["train_overlap"]),
        "gate.min_auc": str(decision["limits"]["min_auc"]),
        "gate.min_sensitivity": str(decision["limits"]["min_sensitivity"]),
        "gate.max_auc_drop": str(decision["limits"]["max_auc_drop"]),
        "gate.n_test": str(decision["n_test"]),
        "gate.test_fingerprint": decision["test_fingerprint"],
    }
    for key, value in tags.items():
        client.set_model_version_tag(decision["model_name"], decision["candidate_version"], key, value)
    mlflow.set_tags(tags)
    values = {
        "gate/passed": float(decision["passed"]),
        "gate/candidate_auc": cand["auc"],
        "gate/candidate_sensitivity": cand["sensitivity"],
    }
    if champ.get("auc") is not None:
        values |= {"gate/champion_auc_same_test": champ["auc"], "gate/auc_delta": champ["auc_delta"]}
    tracking.log_metrics(
        {k: v for k, v in values.items() if v is not None and math.isfinite(v)}, parent_run_id
    )
