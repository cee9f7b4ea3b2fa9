"""The Great Expectations suite: every expectation can fail, and the age check runs for every layout
that carries an age.

The loaders already guarantee some of the suite (at least one row, labels in {0, 1}, both classes);
those expectations are the manifest's contract for any producer, so they are broken here at the GX
level, on an inspected manifest built by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from datagen import make_challenge_2019, make_challenge_2020, make_isic, make_manifest

from melanoma_mlops.data.expectations import run_expectations
from melanoma_mlops.data.validation import validate


def _inspected(n: int = 6) -> pd.DataFrame:
    """What validation hands to GX: one row per image, every check passing."""
    return pd.DataFrame(
        {
            "image_uri": [f"/data/img_{i}.png" for i in range(n)],
            "label": [i % 2 for i in range(n)],
            "error": [None] * n,
            "min_side": [64] * n,
            "mode": ["RGB"] * n,
            "dup_label_conflict": [False] * n,
            "group_kind": [""] * n,
            "group_id": [""] * n,
        }
    )


def _failures(df: pd.DataFrame, tmp_path: Path) -> list[str]:
    ok, failures, index = run_expectations(df, 32, tmp_path / "docs")
    assert index is not None and index.exists(), "Data Docs are written whatever the outcome"
    assert ok == (not failures)
    return failures


def test_a_clean_manifest_passes(tmp_path: Path) -> None:
    assert _failures(_inspected(), tmp_path) == []


@pytest.mark.parametrize(
    ("break_it", "expectation"),
    [
        (lambda df: df.iloc[0:0], "expect_table_row_count_to_be_between"),
        (lambda df: df.assign(label=[0, 1, 2, 0, 1, 0]), "expect_column_values_to_be_in_set(label"),
        (lambda df: df.assign(label=0), "expect_column_distinct_values_to_contain_set(label"),
        (lambda df: df.assign(error=["corrupt", *[None] * 5]), "expect_column_values_to_be_null(error"),
        (lambda df: df.assign(min_side=[8, *[64] * 5]), "expect_column_values_to_be_between(min_side"),
        (lambda df: df.assign(mode=["CMYK", *["RGB"] * 5]), "expect_column_values_to_be_in_set(mode"),
        (lambda df: df.assign(dup_label_conflict=[True, *[False] * 5]), "dup_label_conflict"),
        (lambda df: df.assign(age=[500, *[40] * 5]), "expect_column_values_to_be_between(age"),
        (lambda df: df.assign(age_approx=[-3, *[40] * 5]), "expect_column_values_to_be_between(age_approx"),
        (
            lambda df: df.assign(group_kind="lesion", source_group=[None, *["lesion:1"] * 5]),
            "expect_column_values_to_not_be_null(source_group",
        ),
    ],
)
def test_every_expectation_can_fail(
    break_it: Callable[[pd.DataFrame], pd.DataFrame], expectation: str, tmp_path: Path
) -> None:
    failures = _failures(break_it(_inspected()), tmp_path)
    assert [f for f in failures if expectation in f], failures
    if "row_count" not in expectation:  # an empty table also has no classes; anything else fails alone
        assert len(failures) == 1, failures


def _set_age(csv: Path, column: str, value: object) -> None:
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    df.loc[0, column] = value
    df.to_csv(csv, index=False)


@pytest.mark.parametrize(
    ("layout", "make", "csv_name", "column"),
    [
        ("isic", make_isic, "metadata.csv", "age_approx"),
        ("challenge 2020", make_challenge_2020, "train.csv", "age_approx"),
        ("challenge 2019", make_challenge_2019, "ISIC_2019_Training_Metadata.csv", "age_approx"),
        ("manifest", make_manifest, "manifest.csv", "age"),
    ],
)
def test_an_impossible_age_fails_validation_in_every_layout_that_carries_one(
    layout: str, make: Callable[[Path], Path], csv_name: str, column: str, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    root.mkdir()
    make(root)
    csv = root / csv_name
    if column not in pd.read_csv(csv, nrows=0).columns:  # the manifest layout has no age by default
        df = pd.read_csv(csv, dtype=str, keep_default_na=False)
        df[column] = "40"
        df.to_csv(csv, index=False)
    before = validate(str(root), 8, tmp_path / "docs-ok")
    assert before.success, (layout, before.failures)
    _set_age(csv, column, "500")

    outcome = validate(str(root), 8, tmp_path / "docs")

    assert not outcome.success, layout
    (failure,) = [f for f in outcome.failures if "age" in f]
    assert "500" in failure, failure
