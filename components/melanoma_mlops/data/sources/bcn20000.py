"""Layout ``bcn20000``: BCN20000 as released with its paper (Hernández-Pérez et al., "BCN20000:
Dermoscopic Lesions in the Wild", Sci. Data 11, 641 (2024), doi:10.1038/s41597-024-03387-w; files
on Figshare, doi:10.6084/m9.figshare.24140028; the authors' code, github.com/imatge-upc/BCN20000,
reads ``bcn_filename``, ``diagnosis`` and ``lesion_id`` from it)::

    bcn_20k_train.csv     bcn_filename,age_approx,anatom_site_general,diagnosis,lesion_id,
                          capture_date,sex,split
    BCN_20k_train/        BCN_0000000001.jpg ...

``diagnosis`` is one of the eight codes of the paper (MEL, NV, BCC, SCC, AK, BKL, DF, VASC); the
test CSV (``bcn_20k_test.csv``) has no diagnosis and cannot be used for training or evaluation.
Dermoscopic images from one clinic (Hospital Clínic de Barcelona, 2010-2016). No patient id:
images are grouped by ``lesion_id``. The ISIC Archive's copy of BCN20000 (collection 249) comes as
an ISIC export (``metadata.csv`` with ``isic_id``) and is read by the ``isic`` layout.

Label policy (:mod:`.policy`): malignant = MEL, BCC, SCC; benign = NV, BKL, DF, VASC; AK excluded
for ``malignant``; melanoma = MEL.
"""

from __future__ import annotations

import pandas as pd

from melanoma_mlops.data.sources import metadata
from melanoma_mlops.data.sources.common import FileTree, Loaded, excluded_frame, lacks_columns, read_csv
from melanoma_mlops.data.sources.policy import (
    ACTINIC_KERATOSIS,
    LabelPolicy,
    decide,
    find_images,
    present_mapping,
    uris_or_names,
)
from melanoma_mlops.errors import DataError

NAME = "BCN20000"
REQUIRED = ("bcn_filename", "diagnosis")
MARKS = ("bcn_filename",)
POLICY = LabelPolicy(
    NAME,
    names={
        "MEL": "melanoma",
        "NV": "melanocytic nevus",
        "BCC": "basal cell carcinoma",
        "SCC": "squamous cell carcinoma",
        "AK": "actinic keratosis",
        "BKL": "benign keratosis-like lesion",
        "DF": "dermatofibroma",
        "VASC": "vascular lesion",
    },
    malignant=frozenset({"MEL", "BCC", "SCC"}),
    melanoma=frozenset({"MEL"}),
    excluded={"AK": "BCN20000 AK: " + ACTINIC_KERATOSIS},
)


def accepts(columns: list[str]) -> bool:
    return set(REQUIRED) <= set(columns)


def claims(columns: list[str]) -> bool:
    return bool(set(MARKS) & set(columns))


def load(tree: FileTree, task: str, csv: str) -> Loaded:
    """bcn_20k_train.csv and its images (found by bcn_filename anywhere below the CSV's folder)."""
    meta = read_csv(csv)
    if "bcn_filename" in meta.columns and "diagnosis" not in meta.columns:
        raise DataError(
            f"{csv} is a BCN20000 CSV without a diagnosis column (the test split, bcn_20k_test.csv, is "
            "published without labels): use bcn_20k_train.csv"
        )
    if not accepts(list(meta.columns)):
        raise lacks_columns(csv, NAME, REQUIRED, list(meta.columns))
    codes = meta["diagnosis"].str.strip().str.upper().tolist()
    files = meta["bcn_filename"].str.strip().tolist()
    index = tree.image_index()
    decided = decide(meta, [POLICY.decide(c, task) for c in codes], codes, uris_or_names(index, files))
    kept = decided.kept
    out = pd.DataFrame(
        {
            "image_uri": find_images(index, kept["bcn_filename"].str.strip().tolist(), csv, tree),
            "label": decided.labels,
            "source_label": kept["diagnosis"].str.strip().str.upper().to_numpy(),
            "bcn_filename": kept["bcn_filename"].str.strip().to_numpy(),
        }
    )
    out["diagnosis"] = [POLICY.names[c] for c in out["source_label"]]
    for column in ("lesion_id", "capture_date"):
        if column in kept.columns:
            out[column] = kept[column].str.strip().to_numpy()
    if "split" in kept.columns:
        out["source_split"] = kept["split"].str.strip().to_numpy()
    if "sex" in kept.columns:
        out["sex"] = metadata.sex(kept["sex"])
    if "age_approx" in kept.columns:
        out["age"] = metadata.age(kept["age_approx"])
    if "anatom_site_general" in kept.columns:
        out["anatom_site"] = kept["anatom_site_general"].str.strip().str.lower().to_numpy()
    notes = [POLICY.note(task), "BCN20000 has no patient id: images are grouped by lesion_id only"]
    return Loaded(out, excluded_frame(decided.excluded), present_mapping(out), notes)
