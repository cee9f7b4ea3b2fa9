"""The ISIC 2024 layout (train-metadata.csv + train-image.hdf5) and the hdf5:// image URIs."""

from __future__ import annotations

import io
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from isic2024_data import make_isic2024
from PIL import Image

from melanoma_mlops import storage
from melanoma_mlops.data.sources import reader
from melanoma_mlops.errors import DataError


@pytest.fixture(scope="module")
def isic2024(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> Path:
    return make_isic2024(tmp_path_factory.mktemp("isic2024") / "data", demo_dir, indeterminate=2)


def test_read_bytes_reads_an_hdf5_member_stored_as_bytes_or_opaque(tmp_path: Path) -> None:
    path = tmp_path / "train-image.hdf5"
    payload = b"\xff\xd8 JPEG \x00 with a NUL \xff\xd9"
    with h5py.File(path, "w") as f:
        f.create_dataset("ISIC_1", data=np.array(payload))
        f.create_dataset("ISIC_2", data=np.void(payload))
    for member in ("ISIC_1", "ISIC_2"):
        uri = storage.hdf5_uri(str(path), member)
        assert uri == f"hdf5://{path.resolve()}/{member}"
        assert storage.is_hdf5(uri) and not storage.is_local(uri) and not storage.is_s3(uri)
        assert storage.split_hdf5(uri) == (str(path.resolve()), member)
        assert storage.name(uri) == member and Path(uri).stem == member
        assert storage.read_bytes(uri) == payload
    with pytest.raises(DataError, match="no member 'ISIC_3'"):
        storage.read_bytes(storage.hdf5_uri(str(path), "ISIC_3"))
    with pytest.raises(DataError, match="does not exist"):
        storage.read_bytes(storage.hdf5_uri(str(tmp_path / "gone.hdf5"), "ISIC_1"))
    with pytest.raises(DataError, match="is not hdf5"):
        storage.split_hdf5("hdf5:///no/container/here")


def test_the_layout_is_detected_and_rows_point_into_the_hdf5_file(isic2024: Path) -> None:
    src = reader.load_source(str(isic2024))
    assert src.layout == "isic2024"
    m = src.manifest
    assert len(m) == len(pd.read_csv(isic2024 / "train-metadata.csv")) - 2
    assert m["image_uri"].str.startswith(f"hdf5://{isic2024.resolve()}/train-image.hdf5/ISIC_").all()
    assert (m["group_kind"] == "patient").all() and m["group_id"].str.startswith("patient:IP_").all()
    assert set(m["label"]) == {0, 1} and "age" in m.columns
    # The indeterminate targets are excluded and reported, never folded into benign.
    assert len(src.excluded) == 2 and src.excluded["reason"].str.contains("not 0/1").all()
    first = m.iloc[0]
    with Image.open(io.BytesIO(storage.read_bytes(first["image_uri"]))) as img:
        assert img.format == "JPEG"


def test_the_csv_given_directly_and_the_forced_layout_agree(isic2024: Path) -> None:
    direct = reader.load_source(str(isic2024 / "train-metadata.csv"))
    forced = reader.load_source(str(isic2024), layout="isic2024")
    assert direct.layout == forced.layout == "isic2024"
    pd.testing.assert_frame_equal(direct.manifest, forced.manifest)


def test_melanoma_task_reads_the_full_diagnosis(isic2024: Path) -> None:
    src = reader.load_source(str(isic2024), task="melanoma")
    assert src.manifest["label"].sum() == reader.load_source(str(isic2024)).manifest["label"].sum()


def test_missing_members_and_a_missing_hdf5_file_are_named(isic2024: Path, tmp_path: Path) -> None:
    meta = pd.read_csv(isic2024 / "train-metadata.csv", dtype=str, keep_default_na=False)
    extra = pd.concat([meta, meta.tail(1).assign(isic_id="ISIC_9999999")])
    folder = tmp_path / "short"
    folder.mkdir()
    extra.to_csv(folder / "train-metadata.csv", index=False)
    (folder / "train-image.hdf5").symlink_to(isic2024 / "train-image.hdf5")
    # A link out of the data folder is not followed (data/sources/confine.py), and the error says so.
    with pytest.raises(DataError, match=r"train-image\.hdf5 is beside .* not opened: .*--allow-outside-root"):
        reader.load_source(str(folder))
    with pytest.raises(DataError, match="ISIC_9999999"):
        reader.load_source(str(folder), allow_outside_root=True)
    (folder / "train-image.hdf5").unlink()
    with pytest.raises(DataError, match=r"no train-image\.hdf5"):
        reader.load_source(str(folder))


def test_validation_opens_every_member(isic2024: Path, tmp_path: Path) -> None:
    from melanoma_mlops.data.validation import validate

    outcome = validate(str(isic2024), 32, tmp_path / "docs")
    assert outcome.success, outcome.failures
    assert outcome.manifest["sha256"].str.len().eq(64).all()
    assert (outcome.manifest["format"] == "JPEG").all()
