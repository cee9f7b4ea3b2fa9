"""The ablation's MLflow runs: the experiments it writes to, its parent run, one run per trial, the
leaky tag on every run of the negative control, and what the comparison says about the parent.

The layout of the runs is drawn in :mod:`melanoma_mlops.experiments.ablation`. The ablation's steps
(:mod:`melanoma_mlops.steps.ablation`) open and close these runs; the local runner and the results
reader (``melanoma_pipelines``) find them through :func:`ablation_experiment_id` and
:func:`ablation_experiments`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from mlflow.entities import Param
from mlflow.tracking import MlflowClient

from melanoma_mlops import EXPERIMENT_NAME, tracking
from melanoma_mlops.artifacts import EXPERIMENT_ENV, FINGERPRINT_TAG, LEAKY_LABEL, LEAKY_TAG, PARENT_TAG
from melanoma_mlops.config import ConfigGroup
from melanoma_mlops.experiments.ablation.design import (
    ABLATION_EXPERIMENT,
    PIPELINE_TAG,
    check_trials,
    parse_trial,
)

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


def open_ablation(
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
        FINGERPRINT_TAG: validation.data.tags.get(FINGERPRINT_TAG, ""),
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


def open_trial(ablation_run_id: str, trial: str) -> tuple[str, str, int]:
    """Open the trial's run under the ablation parent; return (arm key, run id, seed)."""
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


def tag_leaky_runs(client: MlflowClient, trial_run_id: str) -> None:
    """Tag every run nested under a leaky trial ``leaky=true`` (one filter in the UI shows them all)."""
    for run in tracking.descendants(client, trial_run_id, ablation_experiments(client)):
        client.set_tag(run.info.run_id, LEAKY_TAG, "true")


def comparison_meta(client: MlflowClient, ablation_run_id: str) -> dict[str, str]:
    """What the comparison's header says about the run: data, seeds, epochs, the MLflow run."""
    parent = client.get_run(ablation_run_id)
    params = parent.data.params
    return {
        "data": params.get("data") or parent.data.tags.get("data.source", ""),
        "data fingerprint": parent.data.tags.get(FINGERPRINT_TAG, "")[:16],
        "seeds": params.get("seeds", ""),
        "single_stage_lr": params.get("single_stage_lr", ""),
        "epochs (stage1 + stage2 | single_stage)": (
            f"{params.get('stage1_epochs', '?')} + {params.get('stage2_epochs', '?')} | "
            f"{params.get('single_stage_epochs', '?')}"
        ),
        "MLflow ablation run": ablation_run_id,
    }
