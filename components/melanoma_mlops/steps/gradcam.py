"""Pipeline step 7, gradcam: Grad-CAM grid, per-image overlays and localisation metrics."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from melanoma_mlops import resume, tracking
from melanoma_mlops.artifacts import (
    FINGERPRINT_TAG,
    GRADCAM_GRID_FILE,
    GRADCAM_SUMMARY_FILE,
    MODEL_FILE,
    PREDICTIONS_FILE,
)
from melanoma_mlops.config import ExplainConfig, TrainingConfig
from melanoma_mlops.evaluation.gradcam import explain
from melanoma_mlops.model import dataset, network, shards

logger = logging.getLogger(__name__)


def gradcam_step(
    model_dir: str,
    evaluation_dir: str,
    out_dir: str,
    *,
    parent_run_id: str,
    training: TrainingConfig,
    cfg: ExplainConfig,
    seed: int,
) -> dict[str, Any]:
    """Grad-CAM of a sample of the evaluate step's test predictions (spread over TP/FN/FP/TN).

    The sampled images come from the image shards when evaluate read them from there (nothing is
    written here); otherwise the originals are decoded.
    """
    outputs = {"explanations": out_dir}
    if resume.reuse(parent_run_id, "gradcam", outputs) is not None:
        return json.loads((Path(out_dir) / GRADCAM_SUMMARY_FILE).read_text())
    image_size, n_samples = training.image_size, cfg.gradcam_samples
    tracking.log_parent_params(parent_run_id, cfg.as_params())
    with tracking.step_run(parent_run_id, "gradcam", cfg.as_params()) as run_id:
        clf = network.load(Path(model_dir) / MODEL_FILE)
        preds = pd.read_csv(
            Path(evaluation_dir) / PREDICTIONS_FILE, dtype={"sha256": str}, keep_default_na=False
        )
        tags = MlflowClient().get_run(parent_run_id).data.tags
        synthetic = tags.get("data.synthetic") == "true"
        store = shards.for_reading(
            [preds], image_size, image_cache=training.image_cache, shard_root=training.shard_root,
            data_key=tags.get(FINGERPRINT_TAG, ""), write=False,
        )  # fmt: skip
        if store is not None:
            store.add_aliases(preds)
        logger.info("Grad-CAM of up to %d test images, spread over TP/FN/FP/TN", n_samples)
        with dataset.reading_from(store):
            summary = explain(
                clf, preds, out_dir, image_size=image_size, n_samples=n_samples, seed=seed,
                synthetic=synthetic,
            )  # fmt: skip
        where = ""
        if "energy_in_mask" in summary:
            where = (
                f"; heatmap energy inside the lesion {summary['energy_in_mask']:.2f}, "
                f"peak inside it in {summary['pointing_game']:.0%} of images"
            )
        logger.info("Grad-CAM: %s overlays%s", summary.get("n_samples", "?"), where)
        if "energy_in_mask" in summary:
            tracking.log_metrics(
                {
                    "gradcam/energy_in_mask": summary["energy_in_mask"],
                    "gradcam/pointing_game": summary["pointing_game"],
                },
                parent_run_id,
            )
        mlflow.log_artifacts(out_dir, "gradcam")
        grid = Path(out_dir) / GRADCAM_GRID_FILE
        if grid.is_file():
            tracking.log_parent_artifact(parent_run_id, grid, "gradcam")
        resume.record(parent_run_id, "gradcam", outputs, run_id=run_id)
        return summary
