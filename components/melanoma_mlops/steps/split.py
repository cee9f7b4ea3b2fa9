"""Pipeline step 2, split: stratified by label, grouped by patient / lesion / duplicate cluster.

The order is the point of this product: the split comes first, then only the training manifest is
oversampled (step 3), then the leakage check runs on exactly what training will see.
"""

from __future__ import annotations

import logging

from melanoma_mlops import tracking
from melanoma_mlops.artifacts import SPLITS
from melanoma_mlops.data import manifest, split

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
        for name, path in zip(SPLITS, (train_path, val_path, test_path), strict=True):
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
