"""The ablation's own pipeline steps: open the ablation and its trials, the leaky split, summarize,
compare. The reused steps (validate, split, oversample, training, evaluate) are the main pipeline's.

MLflow layout (experiment ``melanoma-ablation``)::

    ablation parent run            comparison table (Markdown/CSV/JSON), summary metrics
      |- validate                  (the shared data validation)
      |- two_stage seed=0          one run per trial: tags arm/variant/protocol/seed/leaky
      |    |- split, oversample, stage1, stage2, evaluate, summarize
      |- LEAKY (negative control) two_stage seed=0
           |- leaky_split, stage1, stage2, evaluate, summarize      (every run tagged leaky=true)
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Param, RunStatus
from mlflow.tracking import MlflowClient

from melanoma_mlops import EXPERIMENT_NAME, tracking
from melanoma_mlops.artifacts import (
    EVALUATION_FILE,
    EXPERIMENT_ENV,
    LEAKY_LABEL,
    LEAKY_TAG,
    PARENT_TAG,
    TRIAL_SUMMARY_FILE,
)
from melanoma_mlops.config import ConfigGroup, DataConfig
from melanoma_mlops.data import leakage, manifest
from melanoma_mlops.evaluation import metrics
from melanoma_mlops.experiments.ablation.design import (
    ABLATION_EXPERIMENT,
    PIPELINE_TAG,
    check_trials,
    parse_trial,
)
from melanoma_mlops.experiments.ablation.leaky import paper_leaky_split
from melanoma_mlops.experiments.ablation.report import (
    REPORT_MD,
    run_note,
    summary_metrics,
    write_reports,
)
from melanoma_mlops.experiments.ablation.stats import (
    build_comparison,
    count_test_rows_linked_to_train,
    trial_summary,
)
from melanoma_mlops.registry.report import fmt

logger = logging.getLogger(__name__)


def ablation_experiments(client: MlflowClient) -> list[str]:
    """Every experiment an ablation step may have written to (the reused steps honour EXPERIMENT_ENV)."""
    return sorted(
        {
            exp.experiment_id
            for name in (ABLATION_EXPERIMENT, EXPERIMENT_NAME, os.environ.get(EXPERIMENT_ENV))
            if name and (exp := client.get_experiment_by_name(name)) is not None
        }
    )


def ablation_experiment_id() -> str:
    return tracking.configure(ABLATION_EXPERIMENT)


def start_ablation_step(
    validate_run_id: str, *, run_name: str, trials: Sequence[str], settings: Sequence[ConfigGroup]
) -> str:
    """Open the ablation's parent run in experiment ``melanoma-ablation``; return its id.

    The shared validate step (reused from the main pipeline) has already opened a parent run for
    the data. When it opened it in the ablation experiment (``MELANOMA_EXPERIMENT`` honoured by
    :func:`tracking.configure`) that run *becomes* the ablation's parent, so the validate step nests
    under it. Otherwise a new parent is created here and the validation run is linked by tag.
    """
    parsed = check_trials(trials)
    arms = list(dict.fromkeys(a for a, _ in parsed))
    seeds = sorted({s for _, s in parsed})
    has_leaky = any(a.leaky for a in arms)
    client = MlflowClient()
    exp_id = ablation_experiment_id()
    validation = client.get_run(validate_run_id)
    tags = {
        "pipeline": PIPELINE_TAG,
        "ablation.arms": ",".join(a.key for a in arms),
        "ablation.seeds": ",".join(str(s) for s in seeds),
        "ablation.includes_leaky_control": str(has_leaky).lower(),
        "data.fingerprint": validation.data.tags.get("data.fingerprint", ""),
        "data.source": validation.data.tags.get("data.source", ""),
    }
    if validation.info.experiment_id == exp_id:
        parent = validate_run_id
    else:
        parent = client.create_run(exp_id, run_name=run_name or None, tags={**tags}).info.run_id
        client.set_tag(validate_run_id, "ablation_run_id", parent)
        tags["validate_run_id"] = validate_run_id
        tracking.log_params_once(client, parent, validation.data.params)
        tracking.finish_pipeline_run(validate_run_id)
        logger.warning(
            "the reused steps record their MLflow runs in experiment %r, not %r: "
            "tracking.configure() does not read %s. The ablation's own runs are complete in %r.",
            client.get_experiment(validation.info.experiment_id).name,
            ABLATION_EXPERIMENT,
            EXPERIMENT_ENV,
            ABLATION_EXPERIMENT,
        )
    for key, value in tags.items():
        client.set_tag(parent, key, value)
    tracking.log_params_once(
        client,
        parent,
        {
            **{k: v for group in settings for k, v in group.as_params().items()},
            "trials": len(parsed),
            "arms": ",".join(a.key for a in arms),
            "seeds": ",".join(str(s) for s in seeds),
        },
    )
    logger.info(
        "ablation %s: %d trials (%s x seeds %s)%s",
        parent,
        len(parsed),
        ", ".join(a.label for a in arms),
        seeds,
        f"; includes the {LEAKY_LABEL}" if has_leaky else "",
    )
    return parent


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
    arm, seed = parse_trial(trial)
    client = MlflowClient()
    exp_id = client.get_run(ablation_run_id).info.experiment_id
    run = client.create_run(
        exp_id,
        run_name=f"{arm.label} seed={seed}",
        tags={
            PARENT_TAG: ablation_run_id,
            "ablation.trial": trial,
            "ablation.arm": arm.key,
            "ablation.protocol": arm.protocol,
            "ablation.variant": arm.variant,
            "ablation.seed": str(seed),
            LEAKY_TAG: str(arm.leaky).lower(),
            "pipeline": f"{PIPELINE_TAG}-trial",
        },
    )
    client.log_batch(run.info.run_id, params=[Param("variant", arm.variant), Param("protocol", arm.protocol)])
    if arm.leaky:
        logger.warning("trial %s is the %s: it is never registrable", trial, LEAKY_LABEL)
    return arm.key, run.info.run_id, seed


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
    params = {
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "seed": seed,
        "oversample_strategy": "random 1:1 of the WHOLE manifest BEFORE the split (LEAKY)",
    }
    with tracking.step_run(parent_run_id, "leaky_split", params):
        mlflow.set_tags({LEAKY_TAG: "true", "protocol": LEAKY_LABEL})
        train, val, test = paper_leaky_split(manifest.read(manifest_path), val_fraction, test_fraction, seed)
        for df, path in ((train, train_path), (val, val_path), (test, test_path)):
            manifest.write(df, path)
        counts = {
            "train_images": len(train),
            "val_images": len(val),
            "test_images": len(test),
            "test_copies_in_train": leakage.count_train_copies_in_test(train, test),
            "test_linked_in_train": count_test_rows_linked_to_train(train, test),
            "val_copies_in_train": leakage.count_train_copies_in_test(train, val),
        }
        tracking.log_metrics({f"leaky_split/{k}": v for k, v in counts.items()}, parent_run_id)
        logger.warning(
            "%s split (seed %d): %d train / %d val / %d test rows; %d test rows are copies of training "
            "images",
            LEAKY_LABEL,
            seed,
            len(train),
            len(val),
            len(test),
            counts["test_copies_in_train"],
        )
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
        out = Path(summary_dir)
        out.mkdir(parents=True, exist_ok=True)
        text = json.dumps(metrics.json_safe(summary), indent=2, allow_nan=False)
        (out / TRIAL_SUMMARY_FILE).write_text(text)
        mlflow.log_artifact(str(out / TRIAL_SUMMARY_FILE))
        counts = {
            "leak/test_copies_in_train": summary["test_copies_in_train"],
            "leak/test_copies_share": summary["test_copies_share"],
            "leak/test_linked_in_train": summary["test_linked_in_train"],
            "leak/test_linked_share": summary["test_linked_share"],
            "leak/val_copies_in_train": summary["val_copies_in_train"],
            **{f"leak/{k}": v for k, v in summary["leakage"].items()},
        }
        tracking.log_metrics(counts, trial_run_id)
        if arm.leaky:
            for run in tracking.descendants(client, trial_run_id, ablation_experiments(client)):
                client.set_tag(run.info.run_id, LEAKY_TAG, "true")
        log = logger.warning if arm.leaky else logger.info
        log(
            "%s seed %d: test AUC %s; of %d test rows %d have a copy in train, %d a copy or a same-lesion "
            "image",
            arm.label,
            seed,
            fmt(summary["metrics"]["auc_roc"]),
            summary["n_test"],
            summary["test_copies_in_train"],
            summary["test_linked_in_train"],
        )
    return text


def finish_trial_step(trial_run_id: str, summary: str) -> str:
    """Close the trial run (FINISHED) and pass its summary on to the comparison."""
    MlflowClient().set_terminated(trial_run_id, status=RunStatus.to_string(RunStatus.FINISHED))
    return summary


def compare_step(ablation_run_id: str, summaries: Sequence[str | Mapping[str, Any]], out_dir: str) -> str:
    """Build the comparison, write the reports, log them on the ablation parent and close it.

    Returns the Markdown (the KFP layer also writes it as a Markdown artifact).
    """
    parsed = [json.loads(s) if isinstance(s, str) else dict(s) for s in summaries if s]
    client = MlflowClient()
    parent = client.get_run(ablation_run_id)
    params = parent.data.params
    meta = {
        "data": params.get("data") or parent.data.tags.get("data.source", ""),
        "data fingerprint": parent.data.tags.get("data.fingerprint", "")[:16],
        "seeds": params.get("seeds", ""),
        "single_stage_lr": params.get("single_stage_lr", ""),
        "epochs (stage1 + stage2 | single_stage)": (
            f"{params.get('stage1_epochs', '?')} + {params.get('stage2_epochs', '?')} | "
            f"{params.get('single_stage_epochs', '?')}"
        ),
        "MLflow ablation run": ablation_run_id,
    }
    comparison = build_comparison(parsed, meta=meta)
    paths = write_reports(comparison, out_dir)
    markdown = paths[REPORT_MD].read_text()
    client.log_artifacts(ablation_run_id, out_dir, "ablation")
    tracking.log_finite(client, ablation_run_id, summary_metrics(comparison))
    client.set_tag(ablation_run_id, "mlflow.note.content", run_note(markdown))
    client.set_terminated(ablation_run_id, status=RunStatus.to_string(RunStatus.FINISHED))
    logger.info("ablation %s: comparison of %d trials written to %s", ablation_run_id, len(parsed), out_dir)
    return markdown
