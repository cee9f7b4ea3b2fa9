"""Pipeline steps 2 and 3: the grouped stratified split, then oversampling of train only.

The order is the point of this product: the split comes first and is grouped by patient /
lesion / duplicate cluster, and only the training manifest is oversampled. The leakage check
runs right after oversampling, on exactly what training will see, and fails the run if any
image, hash, duplicate cluster or group appears in more than one set.
"""

from __future__ import annotations

import logging

import mlflow

from . import leakage, manifest, oversample, split, tracking

logger = logging.getLogger(__name__)


def split_step(
    manifest_path: str,
    train_path: str,
    val_path: str,
    test_path: str,
    *,
    parent_run_id: str,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> dict[str, dict[str, float | int]]:
    """Stratified (label) and grouped (patient/lesion/duplicate cluster) train/val/test split."""
    params = {"val_fraction": val_fraction, "test_fraction": test_fraction, "seed": seed}
    with tracking.step_run(parent_run_id, "split", params):
        df = split.split_manifest(manifest.read(manifest_path), val_fraction, test_fraction, seed)
        for name, path in (("train", train_path), ("val", val_path), ("test", test_path)):
            manifest.write(df[df["split"] == name], path)
        summary = split.split_summary(df)
        flat = {f"split/{s}_{k}": float(v) for s, d in summary.items() for k, v in d.items()}
        tracking.log_metrics(flat, parent_run_id)
        for name, d in summary.items():
            logger.info(
                "%s: %d images (%d benign, %d malignant, %.1f%% malignant) in %d groups",
                name,
                d["images"],
                d["benign"],
                d["malignant"],
                100 * d["malignant_share"],
                d["groups"],
            )
        return summary


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
    with tracking.step_run(parent_run_id, "oversample", {"oversample_strategy": "random 1:1 (train only)"}):
        train = manifest.read(train_path)
        balanced = oversample.oversample_train(train, seed)
        before, after = manifest.class_counts(train), manifest.class_counts(balanced)
        logger.info("oversampling train: %s -> %s", before, after)
        tracking.log_metrics(
            {
                **{f"oversample/before_{k}": v for k, v in before.items()},
                **{f"oversample/after_{k}": v for k, v in after.items()},
            },
            parent_run_id,
        )
        report = leakage.check_leakage(balanced, manifest.read(val_path), manifest.read(test_path))
        tracking.log_metrics({f"leakage/{k}": v for k, v in report.summary().items()}, parent_run_id)
        leakage.raise_for_leakage(report)
        mlflow.set_tag("leakage_check", "passed")
        manifest.write(balanced, balanced_path)
        mlflow.log_artifact(balanced_path, "data")
        return after
