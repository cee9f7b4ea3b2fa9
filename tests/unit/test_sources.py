"""sources: one test per layout, and one per bad input, asserting the message names the culprit."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from datagen import (
    make_challenge_2019,
    make_challenge_2020,
    make_folder,
    make_isic,
    make_manifest,
    write_csv,
    write_image,
)
from moto import mock_aws

from melanoma_mlops import storage
from melanoma_mlops.data.sources.reader import load_source
from melanoma_mlops.errors import DataError


def test_folder_layout_with_masks_and_extras(tmp_path: Path) -> None:
    make_folder(tmp_path, n_benign=6, n_malignant=3, masks=True, extras=True)
    result = load_source(str(tmp_path))
    m = result.manifest
    assert result.layout == "folder"
    assert len(m) == 9 and m["label"].sum() == 3
    assert set(m["source_label"]) == {"benign", "malignant"}
    assert result.label_mapping == {"benign": 0, "malignant": 1}
    assert (m["group_id"] == "").all() and (m["group_kind"] == "").all()
    # masks/<class>/<name> fills mask_uri and the masks are not read as images
    assert all(
        u.endswith(Path(i).name) and "/masks/" in u
        for u, i in zip(m["mask_uri"], m["image_uri"], strict=True)
    )
    # non-image files inside class folders are listed, not silently dropped
    reasons = dict(
        zip(result.excluded["image_uri"].map(lambda u: Path(u).name), result.excluded["reason"], strict=True)
    )
    assert set(reasons) == {"notes.txt", "scan.pdf"}
    assert "'.txt'" in reasons["notes.txt"]


def test_folder_layout_nested_kaggle_splits_are_merged(tmp_path: Path) -> None:
    make_folder(tmp_path, n_benign=6, n_malignant=3, nested=True, upper=True)
    result = load_source(str(tmp_path))
    assert result.layout == "folder"
    assert len(result.manifest) == 9
    assert set(result.manifest["source_split"]) == {"train", "test"}
    assert result.label_mapping == {"Benign": 0, "Malignant": 1}


def test_manifest_layout(tmp_path: Path) -> None:
    csv = make_manifest(tmp_path, n_benign=6, n_malignant=4)
    for data in (str(tmp_path), str(csv)):
        result = load_source(data)
        m = result.manifest
        assert result.layout == "manifest"
        assert m["label"].tolist() == [0] * 6 + [1] * 4
        assert m["group_id"].iloc[0] == "group:p0" and m["group_kind"].iloc[0] == "group"
        assert all(Path(u).is_file() for u in m["image_uri"])
        assert result.label_mapping == {"0": 0, "benign": 0, "1": 1, "Malignant": 1}


def test_layout_override(tmp_path: Path) -> None:
    make_manifest(tmp_path)
    with pytest.raises(DataError, match="benign/ or malignant/"):
        load_source(str(tmp_path), layout="folder")


# ----------------------------------------------------------------------------------- bad inputs
def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere.*does not exist"):
        load_source(str(tmp_path / "nowhere"))


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"is empty: no images found"):
        load_source(str(tmp_path))


def test_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "benign").mkdir()
    (tmp_path / "benign" / "a.txt").write_text("x")
    with pytest.raises(DataError, match=r"no usable images found.*not an image"):
        load_source(str(tmp_path))


def test_single_class(tmp_path: Path) -> None:
    make_folder(tmp_path, n_benign=4, n_malignant=0)
    with pytest.raises(DataError, match=r"only benign images found.*both benign and malignant"):
        load_source(str(tmp_path))


def test_manifest_wrong_columns(tmp_path: Path) -> None:
    write_csv(tmp_path / "manifest.csv", [{"path": "a.png", "class": 1}])
    with pytest.raises(
        DataError, match=r"manifest.csv has columns \['path', 'class'\]; expected image_path,label"
    ):
        load_source(str(tmp_path / "manifest.csv"), layout="manifest")


def test_manifest_bad_label_names_value_and_row(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", 1)
    write_image(tmp_path / "b.png", 2)
    write_csv(
        tmp_path / "manifest.csv",
        [{"image_path": "a.png", "label": 0}, {"image_path": "b.png", "label": "maybe"}],
    )
    with pytest.raises(DataError, match=r"manifest.csv: label 'maybe' in row 2 \(line 3\)"):
        load_source(str(tmp_path))


def test_manifest_missing_images_are_listed(tmp_path: Path) -> None:
    rows = [{"image_path": f"img_{i}.png", "label": i % 2} for i in range(14)]
    write_image(tmp_path / "img_0.png", 0)
    write_csv(tmp_path / "manifest.csv", rows)
    with pytest.raises(
        DataError, match=r"13 images referenced by .*manifest.csv are missing: img_1.png.* and 3 more"
    ):
        load_source(str(tmp_path))


def test_unknown_layout_explains(tmp_path: Path) -> None:
    write_image(tmp_path / "pics" / "a.png", 1)
    with pytest.raises(DataError, match=r"cannot tell the layout.*pics/a.png"):
        load_source(str(tmp_path))


# --------------------------------------------------------------------------------- ISIC layouts
def test_isic_layout_excludes_indeterminate_and_groups_by_patient(tmp_path: Path) -> None:
    make_isic(tmp_path)
    result = load_source(str(tmp_path))
    m = result.manifest
    assert result.layout == "isic"
    assert result.label_mapping == {"Benign": 0, "Malignant": 1}
    # 20 lesion images + the re-upload; both Indeterminate rows excluded, counted, with a reason
    assert len(m) == 21 and m["label"].sum() == 8
    assert len(result.excluded) == 2
    assert result.excluded["reason"].str.contains("never folded into benign").all()
    assert not m["isic_id"].isin(["ISIC_0000090", "ISIC_0000091"]).any()
    # patient id wins; a lesion without a patient is its own group; ids keep their kind
    by_id = m.set_index("isic_id")
    assert by_id.loc["ISIC_0000000", "group_id"] == "patient:IP_0000000"
    assert by_id.loc["ISIC_0000018", "group_id"] == "lesion:IL_0000009"
    assert by_id.loc["ISIC_0000018", "group_kind"] == "lesion"
    assert by_id.loc["ISIC_0000000", "age"] == 40


def test_isic_melanoma_task(tmp_path: Path) -> None:
    make_isic(tmp_path)
    result = load_source(str(tmp_path), task="melanoma")
    m = result.manifest.set_index("isic_id")
    assert m["label"].sum() == 4  # lesions 6 and 7; basal cell carcinomas are "rest"
    assert m.loc["ISIC_0000016", "label"] == 0
    assert any("Melanoma Invasive" in k and v == 1 for k, v in result.label_mapping.items())


def test_isic_melanoma_task_without_fine_diagnosis_explains(tmp_path: Path) -> None:
    make_isic(tmp_path, with_fine=False)
    with pytest.raises(DataError, match=r"needs a finer diagnosis column naming Melanoma.*metadata.csv"):
        load_source(str(tmp_path), task="melanoma")


def test_isic_missing_metadata_file(tmp_path: Path) -> None:
    write_image(tmp_path / "ISIC_0000001.jpg", 1)
    with pytest.raises(DataError, match=r"no metadata.csv \(isic_id, diagnosis_1\) found in .*'isic' layout"):
        load_source(str(tmp_path), layout="isic")


def test_isic_wrong_columns_named(tmp_path: Path) -> None:
    write_image(tmp_path / "ISIC_0000001.jpg", 1)
    write_csv(tmp_path / "metadata.csv", [{"isic_id": "ISIC_0000001", "dx": "nevus"}])
    with pytest.raises(
        DataError, match=r"metadata.csv has columns \['isic_id', 'dx'\]; expected isic_id, diagnosis_1"
    ):
        load_source(str(tmp_path / "metadata.csv"))


def test_isic_missing_images_listed(tmp_path: Path) -> None:
    make_isic(tmp_path)
    (tmp_path / "ISIC_0000003.jpg").unlink()
    with pytest.raises(
        DataError, match=r"1 images referenced by .*metadata.csv are missing: ISIC_0000003.jpg"
    ):
        load_source(str(tmp_path))


# ---------------------------------------------------------------------------- challenge layouts
def test_challenge_2020(tmp_path: Path) -> None:
    make_challenge_2020(tmp_path)
    result = load_source(str(tmp_path))
    m = result.manifest
    assert result.layout == "challenge"
    assert len(m) == 12 and m["label"].sum() == 4
    assert all("/train/" in u for u in m["image_uri"])
    assert m["group_id"].str.startswith("patient:").all()
    assert result.label_mapping == {"malignant": 1, "benign": 0}


def test_challenge_2019_with_metadata(tmp_path: Path) -> None:
    make_challenge_2019(tmp_path)
    result = load_source(str(tmp_path))
    m = result.manifest
    assert len(m) == 10  # UNK excluded; AK (with Bowen's disease) excluded for task malignant
    assert result.excluded["source_label"].tolist() == ["AK", "UNK"]
    assert result.label_mapping == {"MEL": 1, "NV": 0, "BCC": 1, "BKL": 0, "DF": 0, "VASC": 0, "SCC": 1}
    assert m["group_id"].str.startswith("lesion:").all()
    melanoma = load_source(str(tmp_path), task="melanoma")
    assert melanoma.manifest["label"].sum() == 2
    assert melanoma.label_mapping["BCC"] == 0


def test_challenge_2019_without_metadata_has_no_groups(tmp_path: Path) -> None:
    make_challenge_2019(tmp_path, metadata=False)
    result = load_source(str(tmp_path))
    assert (result.manifest["group_id"] == "").all()


# ------------------------------------------------------------------------------------- on S3
@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for var in (*storage.ENDPOINT_ENV_VARS, "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)


def _upload(local: Path, bucket: str, prefix: str) -> None:
    client = boto3.client("s3", region_name="us-east-1")
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(local).as_posix()}")


@pytest.mark.parametrize("maker", ["folder", "isic", "manifest"])
def test_layouts_on_s3(tmp_path: Path, s3_env: None, maker: str) -> None:
    {"folder": lambda p: make_folder(p, masks=True), "isic": make_isic, "manifest": make_manifest}[maker](
        tmp_path
    )
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="derm")
        _upload(tmp_path, "derm", "exports/v1")
        result = load_source("s3://derm/exports/v1/")
        assert result.layout == maker
        assert result.manifest["image_uri"].str.startswith("s3://derm/exports/v1/").all()
        local = load_source(str(tmp_path))
        assert len(result.manifest) == len(local.manifest)
        assert result.manifest["label"].tolist() == local.manifest["label"].tolist()
        if maker == "folder":
            assert result.manifest["mask_uri"].str.startswith("s3://derm/exports/v1/masks/").all()
        with pytest.raises(DataError, match=r"s3://derm/nothing-here does not exist"):
            load_source("s3://derm/nothing-here")
