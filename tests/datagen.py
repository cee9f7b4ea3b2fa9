"""Tiny data sets in every supported layout, written to a temporary folder for the data-layer tests.

Images are 16x16 pixels (64 for the hashing tests) made from a random 8x8 pattern scaled up, so
distinct images have distinct perceptual hashes while a resized copy keeps its hash: enough to
exercise the duplicate audit without the cost of real photographs.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

SIZE = 16


def image(seed: int, size: int = SIZE) -> Image.Image:
    """A small RGB image determined by ``seed``."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)


def write_image(path: Path, seed: int, size: int = SIZE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image(seed, size).save(path)
    return path


def write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False, quoting=csv.QUOTE_MINIMAL)
    return path


def make_folder(
    root: Path,
    n_benign: int = 8,
    n_malignant: int = 4,
    *,
    nested: bool = False,
    masks: bool = False,
    extras: bool = False,
    upper: bool = False,
) -> Path:
    """``root/{benign,malignant}/`` (or ``root/{train,test}/{...}/`` when nested)."""
    seed = 0
    for cls, n in (("benign", n_benign), ("malignant", n_malignant)):
        name = cls.capitalize() if upper else cls
        for i in range(n):
            prefix = ("train" if i % 3 else "test") if nested else ""
            path = root / prefix / name / f"{cls}_{i:03d}.png"
            write_image(path, seed)
            if masks:
                write_image(root / prefix / "masks" / name / path.name, seed + 1000)
            seed += 1
    if extras:
        (root / "malignant" / "notes.txt").write_text("not an image")
        (root / "benign" / "scan.pdf").write_bytes(b"%PDF-1.4")
    (root / "README.txt").write_text("tiny test data")
    return root


def make_manifest(root: Path, n_benign: int = 8, n_malignant: int = 4, groups: bool = True) -> Path:
    """``root/images/*.png`` and ``root/manifest.csv`` image_path,label[,group] (mixed label spellings)."""
    rows = []
    for i in range(n_benign + n_malignant):
        malignant = i >= n_benign
        path = write_image(root / "images" / f"img_{i:03d}.png", 100 + i)
        label: object = ("Malignant" if i % 2 else 1) if malignant else ("benign" if i % 2 else 0)
        row: dict[str, object] = {"image_path": path.relative_to(root).as_posix(), "label": label}
        if groups:
            row["group"] = f"p{i // 2}"
        rows.append(row)
    write_csv(root / "manifest.csv", rows)
    return root / "manifest.csv"


def make_isic(root: Path, with_fine: bool = True, patients: bool = True) -> Path:
    """An ISIC Archive export: several images per lesion, Indeterminate rows and a duplicated image.

    Lesions L0..L5 benign (2 images each), L6..L9 malignant (2 images each, L6/L7 melanoma, L8/L9
    basal cell carcinoma), two Indeterminate images; ISIC_0000099 is a byte copy of ISIC_0000000 under
    another lesion id (a re-upload).
    """
    rows = []
    idx = 0
    for lesion in range(10):
        malignant = lesion >= 6
        for _ in range(2):
            isic_id = f"ISIC_{idx:07d}"
            write_image(root / f"{isic_id}.jpg", 200 + idx)
            row = {
                "isic_id": isic_id,
                "diagnosis_1": "Malignant" if malignant else "Benign",
                "lesion_id": f"IL_{lesion:07d}",
                "age_approx": 40 + lesion,
            }
            if patients:
                row["patient_id"] = f"IP_{lesion // 2:07d}" if lesion != 9 else ""
            if with_fine:
                if malignant and lesion < 8:
                    row["diagnosis_2"] = "Malignant melanocytic proliferations (Melanoma)"
                    row["diagnosis_3"] = "Melanoma Invasive"
                elif malignant:
                    row["diagnosis_2"] = "Malignant epidermal proliferations"
                    row["diagnosis_3"] = "Basal cell carcinoma"
                else:
                    row["diagnosis_2"] = "Benign melanocytic proliferations"
                    row["diagnosis_3"] = "Nevus"
            rows.append(row)
            idx += 1
    for k in range(2):
        isic_id = f"ISIC_{90 + k:07d}"
        write_image(root / f"{isic_id}.jpg", 900 + k)
        rows.append(
            {"isic_id": isic_id, "diagnosis_1": "Indeterminate", "lesion_id": f"IL_90{k}", "age_approx": 50}
        )
    shutil.copyfile(root / "ISIC_0000000.jpg", root / "ISIC_0000099.jpg")
    rows.append(
        {"isic_id": "ISIC_0000099", "diagnosis_1": "Benign", "lesion_id": "IL_0000099", "age_approx": 40}
    )
    write_csv(root / "metadata.csv", rows)
    return root / "metadata.csv"


def make_challenge_2020(root: Path, n_patients: int = 6) -> Path:
    """ISIC 2020 ``train.csv`` with images in ``root/train/``; every patient has 2 images."""
    rows = []
    for i in range(n_patients * 2):
        name = f"ISIC_{5000 + i:07d}"
        write_image(root / "train" / f"{name}.jpg", 500 + i)
        target = int(i % 3 == 0)
        rows.append(
            {
                "image_name": name,
                "patient_id": f"IP_{i // 2:03d}",
                "sex": "male",
                "age_approx": 45.0,
                "anatom_site_general_challenge": "torso",
                "diagnosis": "melanoma" if target else "unknown",
                "benign_malignant": "malignant" if target else "benign",
                "target": target,
            }
        )
    write_csv(root / "train.csv", rows)
    return root / "train.csv"


CLASSES_2019 = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")


def make_challenge_2019(root: Path, metadata: bool = True) -> Path:
    """ISIC 2019 ground truth (one-hot) with images in ``root/images/``; one UNK row."""
    diagnoses = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "NV", "NV", "MEL", "UNK"]
    rows, meta = [], []
    for i, dx in enumerate(diagnoses):
        name = f"ISIC_{7000 + i:07d}"
        write_image(root / "images" / f"{name}.jpg", 700 + i)
        rows.append({"image": name, **{c: float(c == dx) for c in CLASSES_2019}})
        meta.append({"image": name, "age_approx": 50, "sex": "female", "lesion_id": f"BCN_{i // 2:07d}"})
    write_csv(root / "ISIC_2019_Training_GroundTruth.csv", rows)
    if metadata:
        write_csv(root / "ISIC_2019_Training_Metadata.csv", meta)
    return root / "ISIC_2019_Training_GroundTruth.csv"


def grouped_manifest(n_groups: int = 30, per_group: int = 3, malignant_every: int = 4) -> pd.DataFrame:
    """An in-memory manifest (no files): ``n_groups`` lesions of ``per_group`` images each."""
    rows = []
    for g in range(n_groups):
        label = int(g % malignant_every == 0)
        for k in range(per_group):
            rows.append(
                {
                    "image_uri": f"/data/img_{g:03d}_{k}.png",
                    "label": label,
                    "sha256": f"{g:03d}{k}".ljust(64, "0"),
                    "group_id": f"lesion:{g:03d}",
                    "group_kind": "lesion",
                }
            )
    return pd.DataFrame(rows)
