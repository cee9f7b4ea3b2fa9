"""sources: one test per layout, and one per bad input, asserting the message names the culprit."""

from __future__ import annotations

from pathlib import Path

import pytest
from datagen import make_folder, make_manifest, write_csv, write_image
from melanoma_mlops.errors import DataError
from melanoma_mlops.sources import load_source


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
