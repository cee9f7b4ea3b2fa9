"""The published protocol's data preparation, leak included: the ablation's NEGATIVE CONTROL.

arXiv 2606.17504 oversampled the whole data set to 1:1 and split afterwards, so copies of one
malignant image sat in train and test. This module rebuilds exactly that so the ablation can
measure how much the leak inflates the metrics. Nothing in the main pipeline imports it, and
every run that uses it is tagged ``leaky=true`` and refused by the registration guard.
"""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

from melanoma_mlops.artifacts import LEAKY_LABEL
from melanoma_mlops.data.oversample import oversample_rows


def paper_leaky_split(
    manifest: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The published protocol, leak included: oversample everything, then split rows at random.

    For the ablation's negative control only; :func:`melanoma_mlops.data.leakage.check_leakage`
    rejects its output.
    """
    balanced = oversample_rows(manifest.drop(columns=["split"], errors="ignore"), seed)
    held_out = val_fraction + test_fraction
    train, rest = train_test_split(
        balanced, test_size=held_out, stratify=balanced["label"], random_state=seed
    )
    val, test = train_test_split(
        rest, test_size=test_fraction / held_out, stratify=rest["label"], random_state=seed
    )
    return (
        train.assign(split="train").reset_index(drop=True),
        val.assign(split="val").reset_index(drop=True),
        test.assign(split="test").reset_index(drop=True),
    )


def split_params(val_fraction: float, test_fraction: float, seed: int) -> dict[str, object]:
    """The leaky split's settings as params, with what it does to the data (its strategy)."""
    return {
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "seed": seed,
        "oversample_strategy": "random 1:1 of the WHOLE manifest BEFORE the split (LEAKY)",
    }


def describe_split(counts: dict[str, int], seed: int) -> str:
    """The leaky split in one line (:func:`.stats.leaky_split_counts`): sizes and the copies in test."""
    return (
        f"{LEAKY_LABEL} split (seed {seed}): {counts['train_images']} train / {counts['val_images']} val / "
        f"{counts['test_images']} test rows; {counts['test_copies_in_train']} test rows are copies of "
        "training images"
    )
