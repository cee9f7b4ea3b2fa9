"""The register step: the final model goes into the MLflow registry as a self-contained pyfunc.

The version carries its contract (input, class meaning, frozen threshold, data fingerprint, test
metrics) as model metadata and as version tags, a Markdown model card, and the alias
``challenger``; promotion to ``champion`` is a separate, gated decision.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from melanoma_mlops import artifact_cleanup, disk_space, resume, tracking
from melanoma_mlops.artifacts import CHALLENGER, EVALUATION_FILE, FINGERPRINT_TAG, GRADCAM_SUMMARY_FILE
from melanoma_mlops.data import describe, manifest
from melanoma_mlops.evaluation import modelcard
from melanoma_mlops.registry import reference
from melanoma_mlops.registry.guard import assert_registrable
from melanoma_mlops.serving.contract import ModelContract, calibration_tags
from melanoma_mlops.serving.pyfunc import register_pyfunc

logger = logging.getLogger(__name__)


def _card(
    parent: Run, model_name: str, version: str, contract: ModelContract, evaluation: dict[str, Any],
    gradcam: dict[str, Any], manifests: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
) -> str:  # fmt: skip
    """The model card's Markdown, from the run's records and the three manifests."""
    params, tags = parent.data.params, parent.data.tags
    return modelcard.render_model_card(
        {
            "model": {
                "name": model_name,
                "version": version,
                "architecture": "ResNet50 + GAP + dropout + dense(1, sigmoid)",
                "input": contract.to_dict()["input"]["preprocessing"],
                "classes": ", ".join(f"{k} = {v}" for k, v in contract.classes.items()),
                "lineage": {"mlflow_run_id": parent.info.run_id, "kfp_run_id": tags.get("kfp.run_id", "")},
            },
            "data": {
                "source": params.get("data", ""),
                "layout": tags.get("data.layout", ""),
                "synthetic": tags.get("data.synthetic") == "true",
                "fingerprint": contract.data_fingerprint,
                "counts": describe.data_counts(*manifests, parent.data.metrics, contract.task),
                "group_key": describe.group_key(pd.concat(manifests)),
                "patient_id": describe.patient_ids(pd.concat(manifests)),
                "exclusions": json.loads(tags.get("data.excluded", "{}")),
            },
            "labels": describe.labels(pd.concat(manifests), contract.task),
            "protocol": {
                "description": "Stage 1: head only on a frozen ResNet50; "
                "Stage 2: every layer at a low learning rate. "
                "Oversampling (1:1) of the training split only, after a grouped stratified split.",
                "hyperparameters": dict(params),
            },
            "operating_point": {
                "rule": evaluation["threshold_rule"],
                "threshold": evaluation["threshold"],
                "target_sensitivity": evaluation.get("target_sensitivity"),
            },
            "metrics": evaluation["test"],
            "ci": evaluation["ci"],
            "bootstrap": {**evaluation["bootstrap"], "units": describe.bootstrap_units(manifests[2])},
            "calibration": evaluation["calibration"],
            "subgroups": evaluation.get("subgroups"),
            "gradcam": {
                "energy_in_mask": gradcam.get("energy_in_mask"),
                "pointing_game": gradcam.get("pointing_game"),
                "n_images": gradcam.get("n_samples"),
                "n_with_mask": gradcam.get("n_with_mask", 0),
            },
        }
    )


def register_step(
    model_dir: str,
    evaluation_dir: str,
    gradcam_dir: str,
    train_manifest: str,
    val_manifest: str,
    test_manifest: str,
    *,
    parent_run_id: str,
    model_name: str,
) -> str:
    """Pipeline step 8: log the pyfunc, register a version, tag it, alias it ``challenger``."""
    assert_registrable(parent_run_id)  # the ablation's LEAKY (negative control) is never registered
    if (done := resume.reuse(parent_run_id, "register", {})) is not None:  # --resume: registered already
        return str(done.value)
    client = MlflowClient()
    with tracking.step_run(parent_run_id, "register", {"model_name": model_name}) as step_run_id:
        parent = client.get_run(parent_run_id)
        evaluation = json.loads((Path(evaluation_dir) / EVALUATION_FILE).read_text())
        gradcam_file = Path(gradcam_dir) / GRADCAM_SUMMARY_FILE
        gradcam = json.loads(gradcam_file.read_text()) if gradcam_file.exists() else {}
        contract = ModelContract.from_evaluation(
            evaluation, int(parent.data.params["image_size"]), parent.data.tags.get(FINGERPRINT_TAG, ""),
            task=parent.data.params.get("task", "malignant"),
        )  # fmt: skip
        train, val, test = (manifest.read(p) for p in (train_manifest, val_manifest, test_manifest))
        store = client.get_run(step_run_id).info.artifact_uri  # the logged model goes beside it
        disk_space.check([disk_space.Need(store, disk_space.MODEL_BYTES, "the registered model")])
        version = artifact_cleanup.call_removing_failed_models(
            register_pyfunc, model_dir, contract, model_name
        )
        tags = {
            "threshold": f"{evaluation['threshold']:.6g}",
            "threshold_rule": evaluation["threshold_rule"],
            "data_fingerprint": contract.data_fingerprint,
            "pipeline_run_id": parent_run_id,
            "register_run_id": step_run_id,
            "kfp_run_id": parent.data.tags.get("kfp.run_id", ""),
            # Set by validate from the demo generator's marker: consumers (the app) must be able to warn.
            "data_synthetic": str(parent.data.tags.get("data.synthetic") == "true").lower(),
            "data_patient_id": parent.data.tags.get("data.patient_id", "not recorded"),
            **contract.metric_tags(evaluation.get("ci") or {}),
            **calibration_tags(evaluation),
        }
        for key, value in tags.items():
            client.set_model_version_tag(model_name, version, key, value)
        reference.log_profile(model_dir, contract, {"val": val, "test": test}, model_name, version)
        card = _card(parent, model_name, version, contract, evaluation, gradcam, (train, val, test))
        mlflow.log_text(card, "model_card.md")
        tracking.log_parent_text(parent_run_id, card, "model_card.md")
        client.update_model_version(model_name, version, description=card)
        client.set_model_version_tag(model_name, version, "model_card", f"runs:/{step_run_id}/model_card.md")
        client.set_registered_model_alias(model_name, CHALLENGER, version)
        tracking.set_parent_tags(parent_run_id, {"model.name": model_name, "model.version": version})
        tracking.link_model_to_parent(parent_run_id, model_name, version)
        logger.info("registered %s version %s as @%s", model_name, version, CHALLENGER)
        resume.record(parent_run_id, "register", {}, version, step_run_id)
    return version
