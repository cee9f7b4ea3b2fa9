"""Pipeline step 1, validate: data source -> validated manifest; opens the MLflow parent run.

Every image is opened once; the Great Expectations suite's Data Docs are written and logged whatever
the outcome, and a failed expectation stops the run with a message listing the offending files.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import mlflow
import pandas as pd

from melanoma_mlops import resume, tracking
from melanoma_mlops.artifacts import FINGERPRINT_TAG
from melanoma_mlops.config import DataConfig
from melanoma_mlops.data import data_docs, demo, describe, manifest
from melanoma_mlops.data.validation import ValidationOutcome, validate

logger = logging.getLogger(__name__)


def validate_step(
    data: str,
    manifest_path: str,
    docs_dir: str,
    report_html: str,
    *,
    cfg: DataConfig,
    run_name: str = "",
    kfp_run_id: str = "",
) -> str:
    """Pipeline step 1. Creates the MLflow parent run (or adopts the local runner's); returns its id.

    A continued run (``--resume``) whose validation already finished reuses its outputs.
    """
    adopted = bool(os.environ.get(tracking.PARENT_RUN_ENV))
    parent = tracking.start_pipeline_run(run_name, tags={"kfp.run_id": kfp_run_id, "data.source": data})
    if not adopted:  # a cluster run: say where it is recorded (a local run's CLI already did)
        logger.info("MLflow parent run %s (%s)", parent, run_name)
    outputs = {"manifest": manifest_path, "data_docs": docs_dir, "report": report_html}
    if resume.reuse(parent, "validate", outputs) is not None:
        return parent
    tracking.log_parent_params(parent, {"data": data, **cfg.as_params()})
    with tracking.step_run(parent, "validate", {"data": data, **cfg.as_params()}) as run_id:
        outcome = validate(
            data, cfg.min_image_size, docs_dir, layout=cfg.layout, task=cfg.task,
            allow_outside_root=cfg.allow_outside_root,
        )  # fmt: skip
        _log_data_docs(outcome, parent, docs_dir, report_html)
        _log_counts_and_exclusions(outcome, parent)
        outcome.raise_if_failed(data, docs_dir)
        final = outcome.final_manifest()
        fp = _record_manifest(outcome, final, parent, run_id, data=data, manifest_path=manifest_path)
        _log_labels(parent, final, cfg.task)
        logger.info(
            "manifest: %d images %s, fingerprint %s",
            len(final),
            manifest.class_counts(final, cfg.task),
            fp[:12],
        )
        resume.record(parent, "validate", outputs, run_id=run_id)
    return parent


def _log_data_docs(outcome: ValidationOutcome, parent: str, docs_dir: str, report_html: str) -> None:
    """The Data Docs (when GX wrote them): the step's report output, the step run's artifacts, and
    one self-contained page on both runs; the report and the page list the excluded rows."""
    if outcome.docs_index is None:
        return
    shutil.copyfile(outcome.docs_index, report_html)
    data_docs.add_exclusions(report_html, outcome.excluded)  # what never reached the expectations
    mlflow.log_artifacts(docs_dir, "data_docs")
    with tempfile.TemporaryDirectory() as tmp:
        # GX's site needs its CDN styles: one self-contained page renders in MLflow's viewer.
        page = data_docs.self_contained(docs_dir, Path(tmp) / data_docs.REPORT_FILE, outcome.excluded)
        if page is not None:
            mlflow.log_artifact(str(page))
            tracking.log_parent_artifact(parent, page)


def _log_counts_and_exclusions(outcome: ValidationOutcome, parent: str) -> None:
    """The image counts, and the excluded images and duplicate pairs as CSV artifacts."""
    counts = {f"data/{k}": v for k, v in outcome.counts().items()}
    # Counts are bookkeeping: metrics of this step's run, params of the parent (whose metrics
    # are the results users compare).
    tracking.log_metrics(counts)
    tracking.log_parent_params(parent, counts)
    with tempfile.TemporaryDirectory() as tmp:
        outcome.excluded.to_csv(Path(tmp) / "excluded.csv", index=False)
        if outcome.audit is not None:
            outcome.audit.pairs.to_csv(Path(tmp) / "duplicate_pairs.csv", index=False)
        mlflow.log_artifacts(tmp, "data")


def _record_manifest(
    outcome: ValidationOutcome,
    final: pd.DataFrame,
    parent: str,
    run_id: str,
    *,
    data: str,
    manifest_path: str,
) -> str:
    """Write the validated manifest and record it: its fingerprint and exclusions as tags, the file
    as an artifact, the data set as an MLflow dataset input of both runs. Returns the fingerprint."""
    manifest.write(final, manifest_path)
    fp = manifest.fingerprint(final)
    synthetic = str(demo.is_synthetic(data)).lower()
    mlflow.set_tags({FINGERPRINT_TAG: fp, "data.layout": outcome.summary.get("layout", "")})
    tracking.set_parent_tags(parent, {"data.excluded": json.dumps(outcome.exclusion_counts())})
    tracking.set_parent_tags(
        parent,
        {
            FINGERPRINT_TAG: fp,
            "data.layout": outcome.summary.get("layout", ""),
            "data.synthetic": synthetic,
        },
    )
    mlflow.log_artifact(manifest_path, "data")
    tracking.log_dataset(
        [run_id, parent],
        final,
        name=Path(str(data).rstrip("/")).name or "manifest",
        fingerprint=fp,
        source=data,
    )
    return fp


#: MLflow caps a tag value at 8000 characters; a longer composition is cut (the JSON artifact has it all).
_TAG_LIMIT = 5000


def _log_labels(parent: str, final: pd.DataFrame, task: str) -> None:
    """What the labels mean (:func:`melanoma_mlops.data.describe.label_summary`), on the parent run."""
    record = describe.label_summary(final, task)
    mlflow.log_dict(record, "data/labels.json")
    tags = describe.label_tags(record)
    tracking.set_parent_tags(parent, {k: v[:_TAG_LIMIT] for k, v in tags.items()})
    logger.info("labels: %s; class 1 = %s", record["label_mapping"], record["class1_composition"] or "n/a")
