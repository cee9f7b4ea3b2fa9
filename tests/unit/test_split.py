"""split: grouped, stratified, deterministic, both classes everywhere."""

from __future__ import annotations

import pandas as pd
import pytest
from datagen import grouped_manifest

from melanoma_mlops.data.split import split_manifest, split_summary
from melanoma_mlops.errors import ConfigError, DataError


def test_every_lesion_stays_in_one_split() -> None:
    df = split_manifest(grouped_manifest(n_groups=40), 0.15, 0.15, seed=1)
    assert set(df["split"]) == {"train", "val", "test"}
    assert (df.groupby("group_id")["split"].nunique() == 1).all()
    summary = split_summary(df)
    for name in ("train", "val", "test"):
        assert summary[name]["benign"] > 0 and summary[name]["malignant"] > 0
    assert abs(summary["test"]["fraction"] - 0.15) < 0.06
    assert abs(summary["train"]["malignant_share"] - 0.25) < 0.06


def test_deterministic_and_seed_dependent() -> None:
    m = grouped_manifest(n_groups=40)
    a = split_manifest(m, 0.2, 0.2, seed=3)["split"]
    b = split_manifest(m, 0.2, 0.2, seed=3)["split"]
    c = split_manifest(m, 0.2, 0.2, seed=4)["split"]
    assert a.equals(b)
    assert not a.equals(c)


def test_empty_group_rows_are_their_own_group_but_shared_sha_is_kept_together() -> None:
    m = grouped_manifest(n_groups=30, per_group=1)
    m["group_id"] = ""
    m.loc[1, "sha256"] = m.loc[0, "sha256"]  # the same bytes under two names
    df = split_manifest(m, 0.2, 0.2, seed=0)
    assert df.loc[0, "split"] == df.loc[1, "split"]
    assert df["split"].value_counts().min() >= 3


def test_too_few_malignant_groups_is_explained() -> None:
    m = grouped_manifest(n_groups=20, per_group=5, malignant_every=10)  # 2 malignant lesions
    with pytest.raises(DataError, match=r"2 groups containing a malignant.*at least 3"):
        split_manifest(m, 0.15, 0.15, seed=0)


def test_refuses_oversampled_input() -> None:
    m = grouped_manifest()
    with pytest.raises(DataError, match="split first, then oversample"):
        split_manifest(pd.concat([m, m.iloc[:3]], ignore_index=True), 0.15, 0.15, seed=0)


def test_bad_fractions() -> None:
    with pytest.raises(ConfigError, match="leave no training data"):
        split_manifest(grouped_manifest(), 0.5, 0.5, seed=0)
