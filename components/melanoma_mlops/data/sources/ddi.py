"""Layout ``ddi``: the Diverse Dermatology Images set (Daneshjou et al., "Disparities in
dermatology AI performance on a diverse, curated clinical image set", Sci. Adv. 8, eabq6147
(2022), doi:10.1126/sciadv.abq6147; files from the Stanford AIMI shared-datasets portal; the
authors' loader, github.com/DDI-Dataset/DDI-Code ``ddi_dataset.py``, reads the columns below)::

    ddi_metadata.csv    ,DDI_ID,DDI_file,skin_tone,malignant,disease
    000001.png ...      (beside the CSV, or in images/)

Every lesion is biopsy-proven. ``skin_tone`` is a Fitzpatrick band: 12 = I-II, 34 = III-IV,
56 = V-VI (``skin_tone`` I-II / III-IV / V-VI); ``malignant`` is True/False (older releases:
``malignancy(malig=1)``, 1/0). No patient, lesion, sex, age or site columns: every image is its
own unit, and the data set cannot be sliced by anything but skin tone.

Label policy: ``malignant`` as published (pathology), except actinic keratosis (``disease`` =
``actinic-keratosis``), excluded as in every layout (:mod:`.policy`); melanoma = a ``disease``
naming melanoma or lentigo maligna (``melanoma``, ``melanoma-in-situ``,
``melanoma-acral-lentiginous``, ``nodular-melanoma-(nm)``, ...).
"""

from __future__ import annotations

import re

import pandas as pd

from melanoma_mlops.data.sources.common import FileTree, Loaded, excluded_frame, lacks_columns, read_csv
from melanoma_mlops.data.sources.policy import (
    ACTINIC_KERATOSIS,
    decide,
    find_images,
    present_mapping,
    uris_or_names,
)

NAME = "DDI"
FLAG_COLUMNS = ("malignant", "malignancy(malig=1)")
REQUIRED = ("DDI_file", "malignant", "disease")
MARKS = ("DDI_file", "DDI_ID")
FLAGS = {"true": 1, "1": 1, "1.0": 1, "false": 0, "0": 0, "0.0": 0}
TONES = {"12": "I-II", "34": "III-IV", "56": "V-VI"}
MELANOMA = re.compile(r"melanoma|lentigo-maligna", re.IGNORECASE)
AK = "actinic-keratosis"


def _flag_column(columns: list[str]) -> str | None:
    return next((c for c in FLAG_COLUMNS if c in columns), None)


def accepts(columns: list[str]) -> bool:
    return {"DDI_file", "disease"} <= set(columns) and _flag_column(columns) is not None


def claims(columns: list[str]) -> bool:
    return bool(set(MARKS) & set(columns))


def _decide(flag: str, disease: str, task: str) -> tuple[int | None, str]:
    if task == "melanoma":
        return int(bool(MELANOMA.search(disease))), ""
    if disease.lower() == AK:
        return None, "DDI actinic-keratosis: " + ACTINIC_KERATOSIS
    if flag.lower() not in FLAGS:
        return None, f"DDI malignant {flag!r} is not True/False: excluded, never guessed"
    return FLAGS[flag.lower()], ""


def load(tree: FileTree, task: str, csv: str) -> Loaded:
    """ddi_metadata.csv and its images (found by DDI_file anywhere below the CSV's folder)."""
    meta = read_csv(csv)
    columns = list(meta.columns)
    flag_col = _flag_column(columns)
    if not accepts(columns) or flag_col is None:
        raise lacks_columns(csv, NAME, REQUIRED, columns)
    flags = meta[flag_col].str.strip().tolist()
    diseases = meta["disease"].str.strip().tolist()
    files = meta["DDI_file"].str.strip().tolist()
    index = tree.image_index()
    source = (
        diseases
        if task == "melanoma"
        else [d if d.lower() == AK else f for f, d in zip(flags, diseases, strict=True)]
    )
    decided = decide(
        meta,
        [_decide(f, d, task) for f, d in zip(flags, diseases, strict=True)],
        source,
        uris_or_names(index, files),
    )
    kept = decided.kept
    out = pd.DataFrame(
        {
            "image_uri": find_images(index, kept["DDI_file"].str.strip().tolist(), csv, tree),
            "label": decided.labels,
            "source_label": (kept["disease"] if task == "melanoma" else kept[flag_col])
            .str.strip()
            .to_numpy(),
            "DDI_file": kept["DDI_file"].str.strip().to_numpy(),
            "diagnosis": kept["disease"].str.strip().to_numpy(),
        }
    )
    if "skin_tone" in kept.columns:
        out["skin_tone"] = [TONES.get(v.strip().removesuffix(".0"), "") for v in kept["skin_tone"]]
    positive = "a disease naming melanoma" if task == "melanoma" else f"{flag_col} = True"
    notes = [
        f"DDI: class 1 = {positive}" + ("" if task == "melanoma" else "; excluded: actinic-keratosis"),
        "DDI has no patient or lesion id: every image is its own unit",
    ]
    return Loaded(out, excluded_frame(decided.excluded), present_mapping(out), notes)
