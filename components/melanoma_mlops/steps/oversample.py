"""Pipeline step 3, oversample: RandomOverSampler to 1:1 on the TRAINING manifest only, then the
leakage check on exactly what training will see (fails the run if any image, hash, duplicate
cluster or group appears in more than one of train/validation/test).
"""

from __future__ import annotations

import logging

import mlflow

from melanoma_mlops import resume, tracking
from melanoma_mlops.data import leakage, manifest, oversample

logger = logging.getLogger(__name__)


def oversample_step(
    train_path: str,
    val_path: str,
    test_path: str,
    balanced_path: str,
    *,
    parent_run_id: str,
    seed: int,
) -> dict[str, int]:
    """RandomOverSampler to 1:1 on the training manifest, then the leakage check."""
    outputs = {"balanced_train": balanced_path}
    if (done := resume.reuse(parent_run_id, "oversample", outputs)) is not None:
        return done.value
    params = {"oversample_strategy": "random 1:1 (train only)"}
    with tracking.step_run(parent_run_id, "oversample", params) as run_id:
        train = manifest.read(train_path)
        balanced = oversample.oversample_train(train, seed)
        task = tracking.parent_param(parent_run_id, "task", "malignant")  # names the classes
        before, after = manifest.class_counts(train, task), manifest.class_counts(balanced, task)
        tracking.log_metrics(
            {
                **{f"oversample/before_{k}": v for k, v in before.items()},
                **{f"oversample/after_{k}": v for k, v in after.items()},
            },
            parent_run_id,
        )
        report = leakage.check_leakage(balanced, manifest.read(val_path), manifest.read(test_path))
        # The leakage counts stay on this step's run; the parent gets the verdict as a tag.
        tracking.log_metrics({f"leakage/{k}": v for k, v in report.summary().items()})
        leakage.raise_for_leakage(report)
        mlflow.set_tag("leakage_check", "passed")
        tracking.set_parent_tags(parent_run_id, {"leakage_check": "passed"})
        manifest.write(balanced, balanced_path)
        mlflow.log_artifact(balanced_path, "data")
        resume.record(parent_run_id, "oversample", outputs, {k: int(v) for k, v in after.items()}, run_id)
        return after
