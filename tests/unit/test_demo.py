"""The demo generator: an ISIC-style export with several images per lesion, patients with several
lesions, masks the ISIC loader finds, re-uploads the duplicate audit ties back, a difficulty that
sets the classes' overlap, and the marker contract that regenerates an out-of-date demo set."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from melanoma_mlops.config import DataConfig
from melanoma_mlops.data import demo, demo_lesions
from melanoma_mlops.data.sources.reader import load_source


@pytest.fixture(scope="module")
def isic_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, demo.DemoSummary]:
    out = tmp_path_factory.mktemp("isic_demo")
    return out, demo.generate(out, n=200, size=48, seed=5)


def _metadata(root: Path) -> pd.DataFrame:
    with (root / "metadata.csv").open() as fh:
        return pd.DataFrame(list(csv.DictReader(fh)))


def test_the_default_layout_is_an_isic_export_with_lesions_patients_and_diagnoses(isic_demo) -> None:
    root, summary = isic_demo
    meta = _metadata(root)
    assert list(meta.columns) == list(demo.METADATA_COLUMNS)
    assert len(meta) == 200 and meta["isic_id"].is_unique
    assert (meta["diagnosis_1"] == "Malignant").sum() == summary.n_malignant == 40
    assert set(meta["diagnosis_1"]) == {"Benign", "Malignant"}
    malignant = set(meta.loc[meta["diagnosis_1"] == "Malignant", "diagnosis_3"])
    assert "Basal cell carcinoma" in malignant and any("Melanoma" in d for d in malignant)
    per_lesion = meta.groupby("lesion_id").size()
    assert per_lesion.max() >= 3 and (per_lesion > 1).sum() >= 10  # several views of many lesions
    lesions_per_patient = meta[meta["patient_id"] != ""].groupby("patient_id")["lesion_id"].nunique()
    assert lesions_per_patient.max() >= 2  # a few patients with several lesions
    assert (meta["patient_id"] == "").any()  # and lesions without a patient id, as in real exports
    views = meta.groupby("lesion_id")[["diagnosis_1", "diagnosis_3", "patient_id"]].nunique()
    assert (views[["diagnosis_1", "diagnosis_3"]] == 1).all().all()  # one lesion, one diagnosis
    for isic_id in meta["isic_id"]:
        assert (root / f"{isic_id}.jpg").is_file()
        assert (root / "masks" / f"{isic_id}_segmentation.png").is_file()
    assert summary.n_lesions == meta["lesion_id"].nunique()


def test_the_isic_loader_reads_it_with_masks_and_lesion_and_patient_groups(isic_demo) -> None:
    root, _ = isic_demo
    src = load_source(str(root))
    m = src.manifest
    assert src.layout == "isic" and len(m) == 200
    assert src.label_mapping == {"Benign": 0, "Malignant": 1}
    assert (m["mask_uri"] != "").all()
    assert all(
        Path(u).name == f"{i}_segmentation.png" for u, i in zip(m["mask_uri"], m["isic_id"], strict=True)
    )
    assert {"patient", "lesion"} <= set(m["group_kind"])
    assert {"diagnosis_2", "diagnosis_3", "age", "sex", "anatom_site"} <= set(m.columns)


def test_views_of_one_lesion_are_different_photographs_with_their_own_masks(isic_demo) -> None:
    root, _ = isic_demo
    meta = _metadata(root)
    lesion = meta.groupby("lesion_id").size().idxmax()
    ids = meta.loc[meta["lesion_id"] == lesion, "isic_id"].tolist()
    images = [np.asarray(Image.open(root / f"{i}.jpg"), dtype=float) for i in ids]
    masks = [np.asarray(Image.open(root / "masks" / f"{i}_segmentation.png")) > 0 for i in ids]
    assert all(0 < m.mean() < 0.8 for m in masks)
    assert np.abs(images[0] - images[1]).mean() > 5  # rotated, rescaled, relit: not a copy
    assert not np.array_equal(masks[0], masks[1])


def test_re_uploads_are_found_by_the_duplicate_audit_and_no_group_spans_two_splits(
    isic_demo, tmp_path: Path
) -> None:
    from melanoma_mlops.data.split import split_manifest
    from melanoma_mlops.data.validation import validate

    root, summary = isic_demo
    assert summary.n_reuploads == 2  # 1% of 200
    outcome = validate(str(root), 32, tmp_path / "docs")
    assert outcome.success, outcome.failures
    assert outcome.summary["dup_near_pairs"] + outcome.summary["dup_exact_pairs"] >= summary.n_reuploads
    split = split_manifest(outcome.manifest.drop(columns=["split"]), 0.15, 0.15, seed=42)
    for key in ("lesion_id", "patient_id", "group_id"):
        values = split[split[key] != ""]
        assert (values.groupby(key)["split"].nunique() == 1).all(), key


def test_difficulty_sets_the_overlap_of_the_latent_atypia(tmp_path: Path) -> None:
    easy = demo.generate(tmp_path / "easy", n=60, size=24, seed=1, difficulty=0.0)
    hard = demo.generate(tmp_path / "hard", n=60, size=24, seed=1, difficulty=1.0)
    assert easy.latent_auc == 1.0
    assert 0.6 < hard.latent_auc < 0.95
    rng = np.random.default_rng(0)
    draws = [[demo_lesions.draw_atypia(rng, label, 0.5) for _ in range(2000)] for label in (0, 1)]
    assert np.mean(draws[1]) - np.mean(draws[0]) == pytest.approx(0.4, abs=0.03)
    assert min(map(min, draws)) >= 0.0 and max(map(max, draws)) <= 1.0


def test_the_folder_layout_keeps_one_image_per_lesion_in_class_folders(tmp_path: Path) -> None:
    summary = demo.generate(tmp_path, n=30, size=24, seed=2, layout="folder")
    assert summary.n_malignant == 6 and summary.n_benign == 24
    assert len(list((tmp_path / "malignant").glob("*.png"))) == 6
    assert len(list((tmp_path / "masks" / "benign").glob("*.png"))) == 24
    assert load_source(str(tmp_path)).layout == "folder"


def test_the_marker_says_synthetic_and_what_would_regenerate_it(isic_demo, tmp_path: Path) -> None:
    root, _ = isic_demo
    text = (root / demo.MARKER).read_text()
    assert text.startswith(demo.SYNTHETIC_NOTE)
    assert "images: 200 (160 benign, 40 malignant)" in text and "latent atypia AUC" in text
    assert demo.is_synthetic(str(root)) and demo.is_synthetic(str(root / "metadata.csv"))
    assert demo.is_current(root, 200) and not demo.is_current(root, 600)
    old = tmp_path / "old"
    old.mkdir()
    (old / demo.MARKER).write_text(f"{demo.SYNTHETIC_NOTE}\nimages: 200 (160 benign, 40 malignant), seed 0\n")
    assert not demo.is_current(old, 200)  # an earlier generator's demo set is made anew
    with pytest.raises(ValueError, match="layout"):
        demo.generate(tmp_path / "x", n=20, layout="zip")


def test_an_isic_export_may_name_masks_like_their_images(tmp_path: Path) -> None:
    """Masks named ``masks/<isic_id>.png`` fill mask_uri too; images without one get ''."""
    rows = []
    for i, diagnosis in enumerate(["Benign", "Malignant"] * 2):
        Image.new("RGB", (40, 40), (120, 80, 60)).save(tmp_path / f"ISIC_{i:07d}.jpg")
        rows.append({"isic_id": f"ISIC_{i:07d}", "diagnosis_1": diagnosis})
    (tmp_path / "masks").mkdir()
    Image.new("L", (40, 40), 255).save(tmp_path / "masks" / "ISIC_0000001.png")
    pd.DataFrame(rows).to_csv(tmp_path / "metadata.csv", index=False)
    m = load_source(str(tmp_path)).manifest.set_index("isic_id")
    assert m.loc["ISIC_0000001", "mask_uri"].endswith("masks/ISIC_0000001.png")
    assert m.loc["ISIC_0000000", "mask_uri"] == ""
    assert len(m) == 4  # the mask is not read as an image


def test_the_validate_step_names_the_labels_on_the_parent_run(
    isic_demo, tmp_path: Path, mlflow_store: str
) -> None:
    import json

    import mlflow
    from mlflow.tracking import MlflowClient

    from melanoma_mlops.steps.validate import validate_step

    root, _ = isic_demo
    parent = validate_step(
        str(root), str(tmp_path / "manifest.csv"), str(tmp_path / "docs"), str(tmp_path / "report.html"),
        cfg=DataConfig(min_image_size=32),
    )  # fmt: skip
    tags = MlflowClient().get_run(parent).data.tags
    meta = _metadata(root)
    expected = meta.loc[meta["diagnosis_1"] == "Malignant", "diagnosis_3"].value_counts().to_dict()
    assert tags["data.task"] == "malignant"
    assert json.loads(tags["data.label_mapping"]) == {"Benign": 0, "Malignant": 1}
    assert json.loads(tags["data.class1_composition"]) == expected
    assert tags["data.grouping"].startswith("patient (")
    runs = MlflowClient().search_runs([MlflowClient().get_run(parent).info.experiment_id])
    step = next(r for r in runs if r.info.run_name == "validate")
    labels = mlflow.artifacts.load_dict(f"runs:/{step.info.run_id}/data/labels.json")
    assert labels["class1_composition"] == expected and labels["class_names"] == {
        "0": "benign",
        "1": "malignant",
    }
