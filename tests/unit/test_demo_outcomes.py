"""``demo-data --outcomes``: every image of a generated set, once, with the label its data source
gives it, keyed by the sha256 of the bytes a client sends; ``outcomes`` reads the file as written."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pandas as pd
import pytest

from melanoma_mlops.data import demo, demo_clinic, demo_outcomes
from melanoma_mlops.data.sources.reader import load_source
from melanoma_mlops.monitoring.outcomes import read_outcomes


@pytest.fixture(scope="module")
def clinics(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("clinics")
    demo.generate(root / "clinic1", n=40, size=32, seed=5)
    demo_clinic.generate(root / "clinic2", root / "clinic1", n=30, seed=5)
    return root / "clinic1", root / "clinic2"


@pytest.mark.parametrize("which", [0, 1], ids=["clinic1", "clinic2"])
def test_every_image_once_with_its_label_and_the_hash_of_its_bytes(
    clinics, tmp_path: Path, which: int
) -> None:
    data = clinics[which]
    n = demo_outcomes.write(data, tmp_path / "biopsies.csv")
    written = pd.read_csv(tmp_path / "biopsies.csv")
    manifest = load_source(str(data)).manifest
    hashes = {hashlib.sha256(Path(u).read_bytes()).hexdigest(): int(y) for u, y in
              zip(manifest["image_uri"], manifest["label"], strict=True)}  # fmt: skip
    assert n == len(written) == len(hashes) and set(written["sha256"]) == set(hashes)
    labels = zip(written["sha256"], written["label"], strict=True)
    assert {h: int(lab == "malignant") for h, lab in labels} == hashes
    assert not written["image"].str.contains("masks").any()  # the lesion masks are not images to score
    read = read_outcomes(tmp_path / "biopsies.csv")  # what `outcomes` reads: no error, the same rows
    assert len(read) == n and set(read["key_kind"]) == {"sha256"}


def test_a_byte_identical_re_upload_is_one_row(clinics, tmp_path: Path) -> None:
    data = Path(shutil.copytree(clinics[1], tmp_path / "clinic2"))
    labels = pd.read_csv(data / demo_clinic.MANIFEST, dtype=str, keep_default_na=False)
    first = labels.iloc[0].copy()
    copy = "images/re-upload.jpg"
    shutil.copy(data / first["image_path"], data / copy)
    first["image_path"], first["lesion_id"] = copy, "another-lesion-id"
    pd.concat([labels, first.to_frame().T]).to_csv(data / demo_clinic.MANIFEST, index=False)
    assert demo_outcomes.write(data, tmp_path / "b.csv") == len(labels)  # one image more, no row more
    assert read_outcomes(tmp_path / "b.csv")["key"].is_unique
