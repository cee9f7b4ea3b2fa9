"""External validation: a registered model on another data set, recorded as its own MLflow run.

The data is validated by the validate step's own code (Great Expectations, one inspection of every
image), audited against the images of the model's own data set (left out and listed, or refused),
scored through the registered pyfunc (what serving runs) at the model's frozen threshold, and
measured whole and per subgroup with group-bootstrap intervals. The run lives in its own experiment
with the data set as its dataset input and the metrics linked to the model's logged model; the
version gets ``external.<name>.*`` tags and a model-card section. A failure ends the run FAILED
with the reason in its ``error`` tag.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from melanoma_mlops import tracking
from melanoma_mlops.config import DataConfig, ExplainConfig, ExternalConfig
from melanoma_mlops.data import labels, manifest, overlap
from melanoma_mlops.data.validation import validate
from melanoma_mlops.errors import DataError
from melanoma_mlops.evaluation import external
from melanoma_mlops.registry import external as registry_external
from melanoma_mlops.registry import scoring
from melanoma_mlops.serving.pyfunc import keras_model_and_contract

logger = logging.getLogger(__name__)


def external_step(
    model_uri: str,
    data: str,
    name: str,
    out_dir: str,
    *,
    data_cfg: DataConfig,
    cfg: ExternalConfig,
    explain: ExplainConfig,
    seed: int,
) -> dict[str, Any]:
    """Validate, audit, score and record; returns the figures plus ``run_id`` and ``overlaps``."""
    registry_external.check_name(name)
    experiment_id = tracking.configure(cfg.external_experiment)
    client = MlflowClient()
    mv = registry_external.resolve(client, model_uri)  # before the run: a bad URI leaves no run
    pipeline = client.get_run(mv.tags["pipeline_run_id"]).data if mv.tags.get("pipeline_run_id") else None
    task = pipeline.params.get("task", "malignant") if pipeline else "malignant"
    out = Path(out_dir)
    # "task" last: the model's own task, not the data group's unused default
    params = {"model_uri": model_uri, "model_version": mv.version, "data": data, "name": name,
              **cfg.as_params(), **data_cfg.as_params(), **explain.as_params(), "seed": seed,
              "task": task}  # fmt: skip
    tags = {
        "external.name": name,
        "model.name": mv.name,
        "model.version": str(mv.version),
        "data.source": data,
    }
    run = mlflow.start_run(experiment_id=experiment_id, run_name=f"external-{name}", tags=tags)
    try:
        mlflow.log_params(params)
        evaluated, n_overlaps = _validated_without_overlaps(client, mv, data, out, data_cfg, cfg, task)
        loaded = scoring.load_version(mv.name, str(mv.version))
        threshold = scoring.version_threshold(mv, loaded)
        logger.info("scoring %d images with %s v%s at its frozen threshold %.4f",
                    len(evaluated), mv.name, mv.version, threshold)  # fmt: skip
        scores = scoring.score(loaded, evaluated["image_uri"].astype(str), 32)
        result = external.external_figures(
            evaluated,
            scores,
            threshold,
            out / "evaluation",
            spec=external.slice_spec(pipeline.params if pipeline else {}),
            class_names=labels.class_names(task),
            seed=seed,
        )
        mlflow.log_metrics(external.flat_metrics(result), model_id=registry_external.logged_model_id(mv))
        mlflow.log_artifacts(str(out / "evaluation"), "evaluation")
        clf, contract = keras_model_and_contract(loaded)
        external.gradcam_sample(clf, out / "gradcam", out / "evaluation", image_size=contract.image_size,
                                n=explain.gradcam_samples, seed=seed)  # fmt: skip
        mlflow.log_artifacts(str(out / "gradcam"), "gradcam")
        summary = {"run_id": run.info.run_id, "overlaps": n_overlaps, "source": data}
        version_tags = registry_external.record(client, mv, name, result, summary)
        mlflow.log_text(client.get_model_version(mv.name, mv.version).description or "", "model_card.md")
        mlflow.set_tags(version_tags)
    except BaseException as exc:
        mlflow.set_tag("error", str(exc)[:5000])
        mlflow.end_run("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    mlflow.end_run()
    t, ci = result["external"], result["ci"]
    logger.info(
        "external %s (n=%d, %d overlaps left out): AUC %.4f [%.4f, %.4f], sensitivity %.3f, "
        "specificity %.3f, ECE %.3f",
        name, result["n"], n_overlaps, t["auc_roc"], *ci["auc_roc"], t["sensitivity"], t["specificity"],
        result["calibration"]["ece"],
    )  # fmt: skip
    return {**result, "run_id": run.info.run_id, "overlaps": n_overlaps, "model_version": str(mv.version)}


def _validated_without_overlaps(
    client: MlflowClient,
    mv: ModelVersion,
    data: str,
    out: Path,
    data_cfg: DataConfig,
    cfg: ExternalConfig,
    task: str,
) -> tuple[pd.DataFrame, int]:
    """The validated manifest (its Data Docs and exclusions logged) less the images that copy the
    model's own; ``--on-overlap fail`` refuses instead. Returns (manifest, overlaps left out)."""
    outcome = validate(
        data, data_cfg.min_image_size, out / "data_docs", layout=data_cfg.layout, task=task,
        allow_outside_root=data_cfg.allow_outside_root,
    )  # fmt: skip
    if outcome.docs_index is not None:
        mlflow.log_artifacts(str(out / "data_docs"), "data_docs")
    outcome.raise_if_failed(data, out / "data_docs")
    final = outcome.final_manifest()
    fingerprint = manifest.fingerprint(final)
    tracking.log_dataset([mlflow.active_run().info.run_id], final, name=Path(data.rstrip("/")).name or "data",
                         fingerprint=fingerprint, source=data, context="evaluation")  # fmt: skip
    found = overlap.cross_overlaps(final, registry_external.lineage_manifest(client, mv))
    out.mkdir(parents=True, exist_ok=True)
    found.to_csv(out / "overlaps.csv", index=False)
    mlflow.log_artifact(str(out / "overlaps.csv"), "data")
    mlflow.log_metrics(
        {"data/images": len(final), "data/overlaps": len(found), "data/excluded": len(outcome.excluded)}
    )
    if len(found) and cfg.on_overlap == "fail":
        listed = "; ".join(
            f"{r.image_uri} ({r.kind} copy of {r.reference_uri})" for r in found.head(10).itertuples()
        )
        raise DataError(
            f"{len(found)} image(s) of {data} copy images {mv.name} v{mv.version} was trained, tuned or "
            f"tested on: "
            f"{listed}. Remove them, or use --on-overlap exclude to leave them out"
        )
    if len(found):
        logger.warning(
            "%d image(s) copy the model's own and are left out (listed in overlaps.csv)", len(found)
        )
    return final[~final["image_uri"].isin(found["image_uri"])].reset_index(drop=True), len(found)
