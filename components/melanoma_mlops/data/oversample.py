"""Random oversampling of the minority class -- of the TRAINING split only.

Why only train: the published protocol oversampled the whole data set and split afterwards, so
copies of the same malignant image sat in train and test and the test score measured memory.
:func:`oversample_train` refuses any manifest that is not purely training rows, so that order of
operations cannot happen in this code base. Rows (image URIs) are repeated; pixels never are.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from imblearn.over_sampling import RandomOverSampler

from melanoma_mlops.errors import DataError

logger = logging.getLogger(__name__)


def _counts(labels: np.ndarray) -> dict[str, int]:
    return {"benign": int((labels == 0).sum()), "malignant": int((labels == 1).sum())}


def oversample_rows(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Repeat minority rows until both classes are equal; no split check (see oversample_train)."""
    labels = df["label"].astype(int).to_numpy()
    if len(np.unique(labels)) < 2:
        raise DataError(
            f"cannot oversample: the training split has only {_counts(labels)}; it needs both classes"
        )
    sampler = RandomOverSampler(sampling_strategy=1.0, random_state=seed)
    # Fit on row numbers, not features: the sampler only chooses which rows to repeat.
    idx, _ = sampler.fit_resample(np.arange(len(df)).reshape(-1, 1), labels)
    idx = idx.ravel()
    out = df.iloc[idx].reset_index(drop=True)
    out["oversample_copy"] = pd.Series(idx).groupby(idx).cumcount().to_numpy()
    return out


def oversample_train(train: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Balance the training manifest with RandomOverSampler(sampling_strategy=1.0).

    Adds ``oversample_copy``: 0 for the original row, k > 0 for its k-th repeat.
    """
    if "split" not in train.columns:
        raise DataError(
            "the manifest has no split column: split it first (split_manifest) and oversample only the "
            "training rows; oversampling before splitting leaks copies of images into the test set"
        )
    splits = train["split"].astype(str).value_counts().to_dict()
    others = {k: v for k, v in splits.items() if k != "train"}
    if others:
        raise DataError(
            f"oversampling refused: the manifest holds non-training rows {others}; pass only the rows with "
            "split == 'train' (copies in validation/test would leak into evaluation)"
        )
    if "oversample_copy" in train.columns:
        raise DataError("the training manifest is already oversampled (it has an oversample_copy column)")
    before = _counts(train["label"].astype(int).to_numpy())
    out = oversample_rows(train, seed)
    after = _counts(out["label"].astype(int).to_numpy())
    logger.info(
        "oversampled training split: %s -> %s (%d copies added)",
        before,
        after,
        int((out["oversample_copy"] > 0).sum()),
    )
    return out
