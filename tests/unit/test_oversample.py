"""oversample: balances the training split only and marks the copies."""

from __future__ import annotations

import pytest
from datagen import grouped_manifest

from melanoma_mlops.data.oversample import oversample_train
from melanoma_mlops.data.split import split_manifest
from melanoma_mlops.errors import DataError


def test_balances_training_rows() -> None:
    df = split_manifest(grouped_manifest(n_groups=40), 0.15, 0.15, seed=0)
    train = df[df["split"] == "train"]
    out = oversample_train(train, seed=0)
    counts = out["label"].value_counts()
    assert counts[0] == counts[1] == (train["label"] == 0).sum()
    # originals kept once with copy 0; copies are malignant rows repeated
    assert (out["oversample_copy"] == 0).sum() == len(train)
    assert set(out.loc[out["oversample_copy"] > 0, "label"]) == {1}
    assert set(out["image_uri"]) == set(train["image_uri"])
    assert out.equals(oversample_train(train, seed=0))


def test_refuses_non_training_rows() -> None:
    df = split_manifest(grouped_manifest(n_groups=40), 0.15, 0.15, seed=0)
    with pytest.raises(DataError, match=r"non-training rows \{.*'test'"):
        oversample_train(df, seed=0)


def test_refuses_unsplit_manifest() -> None:
    with pytest.raises(DataError, match="no split column: split it first"):
        oversample_train(grouped_manifest(), seed=0)
