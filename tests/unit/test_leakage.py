"""leakage: the pipeline's split passes; the paper's oversample-then-split protocol is rejected."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from datagen import grouped_manifest, make_isic

from melanoma_mlops.data.dedup import assign_groups, audit_duplicates, fingerprint_images
from melanoma_mlops.data.leakage import check_leakage, count_train_copies_in_test, raise_for_leakage
from melanoma_mlops.data.oversample import oversample_rows, oversample_train
from melanoma_mlops.data.sources.reader import load_source
from melanoma_mlops.data.split import split_manifest
from melanoma_mlops.errors import LeakageError
from melanoma_mlops.experiments.ablation.leaky import paper_leaky_split


def _sets(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return tuple(df[df["split"] == s].reset_index(drop=True) for s in ("train", "val", "test"))  # type: ignore[return-value]


def test_grouped_split_then_oversample_is_clean() -> None:
    train, val, test = _sets(split_manifest(grouped_manifest(n_groups=40), 0.15, 0.15, seed=0))
    report = check_leakage(oversample_train(train, seed=0), val, test)
    assert report.ok, report.offending
    raise_for_leakage(report)  # no exception
    assert count_train_copies_in_test(train, test) == 0
    assert set(report.checked_keys) >= {"image_uri", "sha256", "group_id"}


def test_paper_protocol_by_hand_is_rejected() -> None:
    """Oversample first, then split rows at random: copies of malignant images reach the test set."""
    from sklearn.model_selection import train_test_split

    manifest = grouped_manifest(n_groups=40, per_group=1)
    balanced = oversample_rows(manifest, seed=0)
    train, test = train_test_split(balanced, test_size=0.3, stratify=balanced["label"], random_state=0)
    val = test.iloc[:0]
    report = check_leakage(train, val, test)
    assert not report.ok
    assert count_train_copies_in_test(train, test) > 0
    with pytest.raises(LeakageError, match=r"data leakage: \d+ rows share"):
        raise_for_leakage(report)


def test_paper_leaky_split_helper_and_lesion_leak() -> None:
    train, val, test = paper_leaky_split(grouped_manifest(n_groups=40), 0.15, 0.15, seed=0)
    report = check_leakage(train, val, test)
    assert not report.ok
    assert report.summary()["leak_group_id"] > 0  # lesions split across sets
    assert count_train_copies_in_test(train, test) > 0


def test_error_lists_first_20_rows_and_count() -> None:
    m = grouped_manifest(n_groups=30, per_group=1)
    m["group_id"] = "lesion:same"  # every image from one lesion
    half = len(m) // 2
    report = check_leakage(m.iloc[:half], m.iloc[:0], m.iloc[half:])
    with pytest.raises(LeakageError) as info:
        raise_for_leakage(report)
    message = str(info.value)
    assert "and 10 more rows" in message
    assert "lesion:same also in test" in message
    assert message.count("/data/img_") == 20


def test_isic_export_end_to_end_keeps_lesions_patients_and_copies_together(tmp_path: Path) -> None:
    """Source -> fingerprints -> duplicate audit -> groups -> split -> oversample: provably clean."""
    make_isic(tmp_path)
    manifest = fingerprint_images(load_source(str(tmp_path)).manifest)
    grouped = assign_groups(manifest, audit_duplicates(manifest))
    # the re-upload of ISIC_0000000 (another lesion id, no patient) joins patient IP_0000000
    by_id = grouped.set_index("isic_id")["group_id"]
    assert by_id["ISIC_0000099"] == by_id["ISIC_0000000"] == "patient:IP_0000000"
    df = split_manifest(grouped, 0.2, 0.2, seed=0)
    assert (df.groupby("lesion_id")["split"].nunique() == 1).all()
    assert (df.groupby("patient_id")["split"].nunique().drop("", errors="ignore") == 1).all()
    train, val, test = _sets(df)
    report = check_leakage(oversample_train(train, seed=0), val, test, near_max_distance=4)
    assert report.ok, report.offending
    assert "phash" in report.checked_keys
