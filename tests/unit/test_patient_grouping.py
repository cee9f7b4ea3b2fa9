"""What the card and MLflow say about the groups that kept the data apart: a data set without
patient ids (the ISIC Archive's HAM10000 export, the original HAM10000 release) says that
patient-level grouping was impossible, as a card line and a tag, and the card names the groups the
bootstrap actually resampled."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from datagen import make_isic
from public_data import make_ham10000

from melanoma_mlops.data import describe, labels
from melanoma_mlops.data.sources.reader import load_source
from melanoma_mlops.evaluation.modelcard import render_model_card


def test_export_without_patient_id_says_so_on_the_card_and_as_a_tag(tmp_path: Path) -> None:
    make_isic(tmp_path, patients=False)
    manifest = load_source(str(tmp_path)).manifest
    summary = describe.label_summary(manifest, "malignant")
    tags = describe.label_tags(summary)
    assert tags["data.patient_id"] == "absent"
    assert tags["data.grouping"].startswith("lesion (")
    units = describe.bootstrap_units(manifest)
    assert units.startswith("whole lesions resampled (") and "patients" not in units
    card = render_model_card(
        {
            "model": {"name": "m"},
            "data": {"patient_id": describe.patient_ids(manifest), "group_key": describe.group_key(manifest)},
            "metrics": {"n": 10, "auc_roc": 0.8},
            "ci": {"auc_roc": (0.7, 0.9)},
            "bootstrap": {"n_boot": 200, "unit": "group", "n_units": 11, "units": units},
        }
    )
    assert (
        "- **Patient ids:** absent: the data carry no patient id, so patient-level grouping was impossible"
        in card
    )
    assert "200 resamples, whole lesions resampled (11 lesions)." in card
    assert "lesions/patients" not in card
    make_isic(tmp_path / "with_patients")
    with_patients = load_source(str(tmp_path / "with_patients")).manifest
    assert describe.bootstrap_units(with_patients).startswith("whole patients and lesions resampled (")
    assert describe.label_tags(describe.label_summary(with_patients, "malignant"))["data.patient_id"] == (
        "partial (18 of 21 images)"
    )


def test_patient_id_states() -> None:
    assert labels.patient_ids(pd.DataFrame({"patient_id": ["a", "b"]})) == "present"
    assert labels.patient_ids(pd.DataFrame({"patient_id": ["a", ""]})) == "partial (1 of 2 images)"
    assert labels.patient_ids(pd.DataFrame({"patient_id": ["", ""]})) == "absent"
    assert labels.patient_ids(pd.DataFrame({"lesion_id": ["x"]})) == "absent"
    assert "partial (1 of 2 images): images without one" in labels.describe_patient_ids(
        "partial (1 of 2 images)"
    )
    counts = {
        "patient": {"groups": 3, "images": 7},
        "lesion": {"groups": 2, "images": 3},
        "image": {"groups": 4, "images": 4},
    }
    assert labels.describe_units(
        {"lesion": {"groups": 1, "images": 2}, "image": {"groups": 1, "images": 1}}
    ) == ("whole lesions resampled (1 lesion, 1 single image)")
    assert (
        labels.describe_units(counts)
        == "whole patients and lesions resampled (3 patients, 2 lesions, 4 single images)"
    )


def test_validate_step_tags_the_original_ham10000_release_as_without_patient_id(
    tmp_path: Path, mlflow_store: str
) -> None:
    """The real HAM10000 header through the validate step: layout, lesion groups, no patient id."""
    from mlflow.tracking import MlflowClient

    from melanoma_mlops.config import DataConfig
    from melanoma_mlops.steps.validate import validate_step

    make_ham10000(tmp_path / "ham")
    parent = validate_step(
        str(tmp_path / "ham"), str(tmp_path / "manifest.csv"), str(tmp_path / "docs"),
        str(tmp_path / "report.html"), cfg=DataConfig(min_image_size=16),
    )  # fmt: skip
    tags = MlflowClient().get_run(parent).data.tags
    assert tags["data.layout"] == "ham10000"
    assert tags["data.patient_id"] == "absent"
    assert tags["data.grouping"].startswith("lesion (")
    manifest = pd.read_csv(tmp_path / "manifest.csv", keep_default_na=False)
    assert describe.patient_ids(manifest).startswith("absent: the data carry no patient id")
    assert {"sex", "age", "anatom_site", "clinic"} <= set(manifest.columns)
