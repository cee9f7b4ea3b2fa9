"""Pipeline step 2, split: stratified by label, grouped by patient / lesion / duplicate cluster.

The order is the point of this product: the split comes first, then only the training manifest is
oversampled (step 3), then the leakage check runs on exactly what training will see.
"""

from __future__ import annotations

import logging

from melanoma_mlops import resume, tracking
from melanoma_mlops.artifacts import SPLITS
from melanoma_mlops.config import DataConfig
from melanoma_mlops.data import manifest, split

logger = logging.getLogger(__name__)


def split_step(
    manifest_path: str,
    train_path: str,
    val_path: str,
    test_path: str,
    *,
    parent_run_id: str,
    cfg: DataConfig,
    seed: int,
) -> dict[str, dict[str, float | int]]:
    """Stratified (label) and grouped (patient/lesion/duplicate cluster) train/val/test split."""
    val_fraction, test_fraction = cfg.val_fraction, cfg.test_fraction
    params = {"val_fraction": val_fraction, "test_fraction": test_fraction, "seed": seed}
    outputs = {"train": train_path, "val": val_path, "test": test_path}
    if (done := resume.reuse(parent_run_id, "split", outputs)) is not None:
        return done.value
    tracking.log_parent_params(parent_run_id, {**cfg.as_params(), "seed": seed})
    with tracking.step_run(parent_run_id, "split", params) as run_id:
        df = split.split_manifest(manifest.read(manifest_path), val_fraction, test_fraction, seed)
        for name, path in zip(SPLITS, (train_path, val_path, test_path), strict=True):
            manifest.write(df[df["split"] == name], path)
        summary = split.split_summary(df, cfg.task)
        flat = {f"split/{s}_{k}": float(v) for s, d in summary.items() for k, v in d.items()}
        # Bookkeeping: metrics of this run, params of the parent (its metrics are the results).
        tracking.log_metrics(flat)
        tracking.log_parent_params(parent_run_id, {k: f"{v:g}" for k, v in flat.items()})
        resume.record(parent_run_id, "split", outputs, summary, run_id)
        return summary
