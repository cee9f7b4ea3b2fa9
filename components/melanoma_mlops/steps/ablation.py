"""The ablation's own pipeline steps: open the ablation and its trials, the leaky split, summarize,
compare. The reused steps (validate, split, oversample, training, evaluate) are the main pipeline's;
the runs' layout in MLflow is drawn in :mod:`melanoma_mlops.experiments.ablation`, and the runs are
opened by :mod:`melanoma_mlops.experiments.ablation.runs`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from melanoma_mlops import tracking
from melanoma_mlops.artifacts import EVALUATION_FILE, LEAKY_LABEL, LEAKY_TAG
from melanoma_mlops.config import ConfigGroup, DataConfig
from melanoma_mlops.data import manifest
from melanoma_mlops.experiments.ablation import leaky, report, runs
from melanoma_mlops.experiments.ablation.comparison_md import describe_trial
from melanoma_mlops.experiments.ablation.design import parse_trial
from melanoma_mlops.experiments.ablation.stats import build_comparison, leaky_split_counts, trial_summary

logger = logging.getLogger(__name__)
FINISHED = RunStatus.to_string(RunStatus.FINISHED)


def start_ablation_step(
    validate_run_id: str, *, run_name: str, trials: Sequence[str], settings: Sequence[ConfigGroup]
) -> str:
    """Open the ablation's parent run in experiment ``melanoma-ablation`` (or adopt the validate
    step's parent when it is there already); return its id."""
    return runs.open_ablation(validate_run_id, run_name=run_name, trials=trials, settings=settings)


def write_run_handle(path: str | Path, run_id: str) -> None:
    """Write a run id as a small file artifact (see the KFP layer for why ids travel this way)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(run_id, encoding="utf-8")


def read_run_handle(path: str | Path) -> str:
    return Path(path).read_text(encoding="utf-8").strip()


def start_trial_step(ablation_run_id: str, trial: str) -> tuple[str, str, int]:
    """Open the trial's MLflow run under the ablation parent; return (arm key, run id, seed).

    The arm key is what the pipeline branches on; the run id is the ``parent_run_id`` every step of
    the trial (reused or not) nests under, so one trial reads as one run in the MLflow UI.
    """
    return runs.open_trial(ablation_run_id, trial)


def leaky_split_step(
    manifest_path: str,
    train_path: str,
    val_path: str,
    test_path: str,
    *,
    parent_run_id: str,
    cfg: DataConfig,
    seed: int,
) -> dict[str, int]:
    """The published protocol's data preparation, leak included (NEGATIVE CONTROL ONLY).

    Oversample the whole validated manifest to 1:1 first, then a plain stratified row split of the
    oversampled rows (:func:`melanoma_mlops.experiments.ablation.leaky.paper_leaky_split`). The
    training manifest is already balanced, so there is no separate oversample step; there is
    deliberately no leakage check that could stop it -- the leak is what this arm measures, and
    :func:`summarize_trial_step` counts it.
    """
    val_fraction, test_fraction = cfg.val_fraction, cfg.test_fraction
    with tracking.step_run(
        parent_run_id, "leaky_split", leaky.split_params(val_fraction, test_fraction, seed)
    ):
        mlflow.set_tags({LEAKY_TAG: "true", "protocol": LEAKY_LABEL})
        train, val, test = leaky.paper_leaky_split(
            manifest.read(manifest_path), val_fraction, test_fraction, seed
        )
        for df, path in ((train, train_path), (val, val_path), (test, test_path)):
            manifest.write(df, path)
        counts = leaky_split_counts(train, val, test)
        tracking.log_metrics({f"leaky_split/{k}": v for k, v in counts.items()}, parent_run_id)
        logger.warning("%s", leaky.describe_split(counts, seed))
        return counts


def summarize_trial_step(
    evaluation_dir: str,
    train_manifest: str,
    val_manifest: str,
    test_manifest: str,
    summary_dir: str,
    *,
    trial_run_id: str,
    trial: str,
) -> str:
    """Count the leak, collect the trial's figures, log them on the trial run; return the JSON.

    For a leaky trial every run nested under the trial run is tagged ``leaky=true`` too, so a
    filter on that tag in the MLflow UI shows the whole control (the registration guard does not
    need it: it walks up to the trial run).
    """
    arm, seed = parse_trial(trial)
    client = MlflowClient()
    with tracking.step_run(trial_run_id, "summarize"):
        if arm.leaky:
            mlflow.set_tag(LEAKY_TAG, "true")
        evaluation = json.loads((Path(evaluation_dir) / EVALUATION_FILE).read_text())
        train, val, test = (manifest.read(p) for p in (train_manifest, val_manifest, test_manifest))
        summary = trial_summary(
            trial, evaluation, train, val, test, client.get_run(trial_run_id).data.metrics
        )
        summary["trial_run_id"] = trial_run_id
        path, text = report.write_trial_summary(summary, summary_dir)
        mlflow.log_artifact(str(path))
        tracking.log_metrics(report.trial_leak_metrics(summary), trial_run_id)
        if arm.leaky:
            runs.tag_leaky_runs(client, trial_run_id)
        (logger.warning if arm.leaky else logger.info)("%s", describe_trial(arm, seed, summary))
    return text


def finish_trial_step(trial_run_id: str, summary: str) -> str:
    """Close the trial run (FINISHED) and pass its summary on to the comparison."""
    MlflowClient().set_terminated(trial_run_id, status=FINISHED)
    return summary


def compare_step(ablation_run_id: str, summaries: Sequence[str | Mapping[str, Any]], out_dir: str) -> str:
    """Build the comparison, write the reports, log them on the ablation parent and close it.

    Returns the Markdown (the KFP layer also writes it as a Markdown artifact).
    """
    parsed = [json.loads(s) if isinstance(s, str) else dict(s) for s in summaries if s]
    client = MlflowClient()
    comparison = build_comparison(parsed, meta=runs.comparison_meta(client, ablation_run_id))
    markdown = report.write_reports(comparison, out_dir)[report.REPORT_MD].read_text()
    client.log_artifacts(ablation_run_id, out_dir, "ablation")
    tracking.log_finite(client, ablation_run_id, report.summary_metrics(comparison))
    client.set_tag(ablation_run_id, "mlflow.note.content", report.run_note(markdown))
    client.set_terminated(ablation_run_id, status=FINISHED)
    logger.info("ablation %s: comparison of %d trials written to %s", ablation_run_id, len(parsed), out_dir)
    return markdown
