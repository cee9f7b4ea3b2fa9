"""Pipeline step 6, evaluate: metrics on test at the threshold frozen on validation, to MLflow."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from melanoma_mlops import resume, tracking
from melanoma_mlops.artifacts import EVALUATION_FILE, FINGERPRINT_TAG, MODEL_FILE, PLOTS, SUBGROUPS_FILE
from melanoma_mlops.config import EvaluationConfig, TrainingConfig
from melanoma_mlops.data import labels, manifest
from melanoma_mlops.evaluation import subgroups
from melanoma_mlops.evaluation.evaluate import evaluate, flat_metrics
from melanoma_mlops.model import dataset, network, shards

logger = logging.getLogger(__name__)


def evaluate_step(
    model_dir: str,
    val_manifest: str,
    test_manifest: str,
    out_dir: str,
    *,
    parent_run_id: str,
    training: TrainingConfig,
    cfg: EvaluationConfig,
    seed: int,
) -> dict[str, Any]:
    """Score val and test, freeze the threshold on val, log the test metrics with their CIs, whole
    and per subgroup (``slice/<subgroup>.<value>/<metric>``, ``subgroups.csv``, the forest plot).

    With image shards (``image_cache``: see TrainingConfig) val and test are read from them (the
    test images are added once); otherwise the originals are decoded as they stream.
    """
    outputs = {"evaluation": out_dir}
    if resume.reuse(parent_run_id, "evaluate", outputs) is not None:
        return json.loads((Path(out_dir) / EVALUATION_FILE).read_text())
    image_size, batch_size = training.image_size, training.batch_size
    tracking.log_parent_params(parent_run_id, cfg.as_params())
    with tracking.step_run(parent_run_id, "evaluate", cfg.as_params()) as run_id:
        clf = network.load(Path(model_dir) / MODEL_FILE)
        val, test = manifest.read(val_manifest), manifest.read(test_manifest)
        # A progress line before the long part (scoring, 1,000 bootstrap resamples, the plots).
        logger.info("scoring %d validation and %d test images with the Stage 2 model", len(val), len(test))
        parent = MlflowClient().get_run(parent_run_id).data
        fingerprint = parent.tags.get(FINGERPRINT_TAG, "")
        task = parent.params.get("task", "malignant")
        store = shards.for_reading(
            [val, test],
            image_size,
            image_cache=training.image_cache,
            shard_root=training.shard_root,
            data_key=fingerprint,
        )
        with dataset.reading_from(store):
            result = evaluate(
                clf,
                val,
                test,
                out_dir,
                image_size=image_size,
                batch_size=batch_size,
                threshold_rule=cfg.threshold_rule,
                target_sensitivity=cfg.target_sensitivity,
                fixed_threshold=cfg.fixed_threshold,
                seed=seed,
                slice_spec=subgroups.SliceSpec(
                    cfg.age_edges(), cfg.slice_min_positives, cfg.slice_min_negatives
                ),
                class_names=labels.class_names(task),
            )
        _log_evaluation(result, parent_run_id, out_dir, cfg.threshold_rule)
        resume.record(parent_run_id, "evaluate", outputs, run_id=run_id)
        return result


def _log_evaluation(result: dict[str, Any], parent_run_id: str, out_dir: str, threshold_rule: str) -> None:
    """The test metrics (whole set and per subgroup) on both runs, the evaluation folder on the
    step's, the curves and the subgroup table and plot on the parent's as well; the headline
    figures on the console."""
    tracking.log_metrics(
        {**flat_metrics(result), **subgroups.flat_metrics(result["subgroups"])}, parent_run_id
    )
    mlflow.log_artifacts(out_dir, "evaluation")
    # What users compare, on the parent too.
    for name in (PLOTS["roc"], PLOTS["pr"], PLOTS["subgroups"], SUBGROUPS_FILE):
        path = Path(out_dir) / name
        if path.is_file():
            tracking.log_parent_artifact(parent_run_id, path, "evaluation")
    t = result["test"]
    logger.info(
        "test (n=%d, threshold %.4f by %s): AUC %.4f [%.4f, %.4f], "
        "sensitivity %.3f, specificity %.3f, F1 %.3f",
        result["n_test"],
        result["threshold"],
        threshold_rule,
        t["auc_roc"],
        *result["ci"]["auc_roc"],
        t["sensitivity"],
        t["specificity"],
        t["f1"],
    )
