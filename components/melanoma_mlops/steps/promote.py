"""Pipeline step 9, promote: the fair gate against the champion, recorded everywhere a user looks.

The candidate (the version ``register`` just made ``challenger``) and the current ``champion`` are
scored through their registered pyfuncs on the same test manifest, with 95% bootstrap intervals by
group (:mod:`melanoma_mlops.registry.scoring`); the pure
:func:`melanoma_mlops.registry.gate.decide` applies the evidence minimums and the limits to the
intervals' lower bounds; the decision (intervals included) becomes version tags ``gate.*``, a nested
MLflow run, a Markdown report, and with ``auto_promote`` the alias move. The record and its tags
are composed in :mod:`melanoma_mlops.registry.decision`; this step writes them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from melanoma_mlops import run_note, tracking
from melanoma_mlops.artifacts import EVALUATION_FILE, GATE_DECISION_FILE, GATE_REPORT_FILE
from melanoma_mlops.config import GateConfig, TrainingConfig
from melanoma_mlops.data import manifest
from melanoma_mlops.evaluation import metrics
from melanoma_mlops.registry import champion as champions
from melanoma_mlops.registry import lookup, scoring
from melanoma_mlops.registry.decision import (
    candidate_of,
    comparison_of,
    decision_metrics,
    decision_record,
    decision_tags,
    limits_of,
    slice_spec_of,
)
from melanoma_mlops.registry.gate import decide
from melanoma_mlops.registry.report import gate_markdown

logger = logging.getLogger(__name__)


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
    95% intervals, and the champion on the same test set (paired), whole and per subgroup.

    Returns the decision (JSON-serialisable; :func:`gate_markdown` renders it). With
    ``auto_promote`` a passing candidate becomes ``champion``; without, the gate only recommends.
    ``image_size`` is the candidate's training input size, checked against its contract; each model
    is scored at its own size by its own pyfunc.
    """
    version = str(candidate_version)
    image_size, batch_size = training.image_size, training.batch_size
    tracking.log_parent_params(parent_run_id, gate.as_params())
    client = MlflowClient()
    with tracking.step_run(parent_run_id, "promote", _params(gate)) as run_id:
        evaluation = json.loads((Path(evaluation_dir) / EVALUATION_FILE).read_text())
        spec = slice_spec_of(evaluation)  # the subgroups as the evaluate step cut them
        limits = limits_of(gate, spec)
        test = manifest.read(test_manifest)
        candidate_mv = lookup.get_version(client, gate.model_name, version)
        champions.refuse_leaky(client, candidate_mv)
        scores, cand = scoring.score_candidate(
            gate.model_name, version, test, evaluation, image_size, batch_size
        )
        champion_mv, champ = scoring.score_champion(
            client, gate.model_name, version, test, (scores, float(evaluation["threshold"])), batch_size, spec
        )
        verdict = decide(
            candidate_of(version, cand, evaluation),
            comparison_of(champ),
            limits,
            auto_promote=gate.auto_promote,
        )
        decision = decision_record(verdict, gate, candidate_mv, champion_mv, champ, cand, evaluation, test)
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


def _params(gate: GateConfig) -> dict[str, Any]:
    """The gate's settings as MLflow params ``gate_<field>`` (the model name is logged by register)."""
    return {f"gate_{k}": v for k, v in gate.as_params().items() if k != "model_name"}


def _record(client: MlflowClient, decision: dict[str, Any], parent_run_id: str) -> None:
    """The decision as version tags, step-run tags and metrics (step run and parent run)."""
    tags = decision_tags(decision, parent_run_id)
    for key, value in tags.items():
        client.set_model_version_tag(decision["model_name"], decision["candidate_version"], key, value)
    mlflow.set_tags(tags)
    tracking.log_metrics(decision_metrics(decision), parent_run_id)
