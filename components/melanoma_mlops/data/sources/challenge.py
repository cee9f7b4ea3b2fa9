"""Layout ``challenge``: the ISIC challenges' training CSVs.

ISIC 2020 (SIIM-ISIC Melanoma Classification; Rotemberg et al., Sci. Data 8, 34 (2021),
doi:10.1038/s41597-021-00815-z): ``train.csv`` (Kaggle) or ``ISIC_2020_Training_GroundTruth.csv``
(challenge site; ``_v2`` adds ``lesion_id``), ``image_name,patient_id,sex,age_approx,
anatom_site_general_challenge,diagnosis,benign_malignant,target``, images ``<image_name>.jpg``
anywhere below (Kaggle: ``jpeg/train/``). ``patient_id`` is required: it tells the training CSV
from ``sample_submission.csv`` (``image_name,target``), which sits beside it in the Kaggle bundle.

ISIC 2019 (challenge site): ``ISIC_2019_Training_GroundTruth.csv``, ``image`` + one-hot
``MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK``, optional ``ISIC_2019_Training_Metadata.csv``
``image,age_approx,anatom_site_general,lesion_id,sex``. The 2018 task 3 ground truth
(``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC``: HAM10000) is read the same way. 2019 combines HAM10000,
BCN_20000 and MSK images: the ``clinic`` of an image is read from its lesion id (``HAM_``,
``BCN_``; '' when it has none).

Label policy (:mod:`.policy`): 2020: ``target`` (1 = melanoma, the set's only malignant class) for
both tasks, "atypical melanocytic proliferation" excluded (indeterminate: possibly a melanoma).
2019/2018: malignant = MEL, BCC, SCC; AK / AKIEC (actinic keratoses together with Bowen's disease)
excluded for ``malignant``; UNK (no diagnosis) excluded; melanoma = MEL.
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

from melanoma_mlops import storage
from melanoma_mlops.data.sources.common import (
    FileTree,
    Loaded,
    carry_metadata,
    excluded_frame,
    lookup_images,
    read_csv,
    wrong_columns,
)
from melanoma_mlops.data.sources.policy import AK_WITH_BOWEN, LabelPolicy

#: The one-hot classes of the 2019 (and 2018 task 3) ground truth.
CHALLENGE_2019_CLASSES = ("MEL", "NV", "BCC", "AK", "AKIEC", "BKL", "DF", "VASC", "SCC", "UNK")
POLICY_2019 = LabelPolicy(
    "ISIC 2019",
    names={
        "MEL": "melanoma",
        "NV": "melanocytic nevus",
        "BCC": "basal cell carcinoma",
        "AK": "actinic keratosis (with Bowen's disease)",
        "AKIEC": "actinic keratosis / intraepithelial carcinoma (Bowen's disease)",
        "BKL": "benign keratosis-like lesion",
        "DF": "dermatofibroma",
        "VASC": "vascular lesion",
        "SCC": "squamous cell carcinoma",
        "UNK": "unknown",
    },
    malignant=frozenset({"MEL", "BCC", "SCC"}),
    melanoma=frozenset({"MEL"}),
    excluded={"AK": "ISIC challenge AK: " + AK_WITH_BOWEN, "AKIEC": "ISIC 2018 AKIEC: " + AK_WITH_BOWEN},
    excluded_always={"UNK": "diagnosis UNK (unknown) is excluded, never folded into benign"},
)
#: ISIC 2020 diagnoses left out whatever ``target`` says (indeterminate: possibly a melanoma).
EXCLUDED_2020 = {
    "atypical melanocytic proliferation": "ISIC 2020 'atypical melanocytic proliferation' is indeterminate "
    "(possibly a melanoma): excluded, never folded into benign"
}
#: Lesion-id prefixes of the 2019 training set's sources.
SOURCES_2019 = {"HAM_": "HAM10000", "BCN_": "BCN20000"}


def is_2020(columns: list[str]) -> bool:
    return {"image_name", "patient_id", "target"} <= set(columns)


def is_2019(columns: list[str]) -> bool:
    return {"image", "MEL", "NV"} <= set(columns)


def accepts(columns: list[str]) -> bool:
    return is_2020(columns) or is_2019(columns)


def claims(columns: list[str]) -> bool:
    """The columns only these CSVs have (the loader then names what is missing)."""
    return bool({"image_name", "anatom_site_general_challenge", "benign_malignant", "MEL"} & set(columns))


class _Rows(NamedTuple):
    """The rows a challenge CSV keeps, and the metadata frame aligned with them."""

    names: list[str]
    labels: list[int]
    source_labels: list[str]
    meta: pd.DataFrame
    notes: list[str]


def _rows_2020(gt: pd.DataFrame, index: dict[str, str], excluded: list[dict[str, object]]) -> _Rows:
    target = gt["target"].astype(str).str.strip()
    diagnosis = (
        gt["diagnosis"].astype(str).str.strip().str.lower()
        if "diagnosis" in gt.columns
        else pd.Series("", index=gt.index)
    )
    keep = []
    for pos in range(len(gt)):
        reason = EXCLUDED_2020.get(diagnosis.iat[pos]) or (
            "" if target.iat[pos] in ("0", "1") else f"target {target.iat[pos]!r} is not 0/1"
        )
        keep.append(not reason)
        if reason:
            name = gt["image_name"].iat[pos]
            excluded.append(
                {
                    "image_uri": index.get(name, name),
                    "source_label": diagnosis.iat[pos] or target.iat[pos],
                    "reason": reason,
                    "row": pos + 1,
                }
            )
    kept = gt[keep].reset_index(drop=True)
    labels = [int(v) for v in kept["target"].astype(str).str.strip()]
    if "benign_malignant" in kept.columns:
        source_labels = list(kept["benign_malignant"].astype(str).str.strip())
    else:
        source_labels = [str(y) for y in labels]
    notes = [
        "ISIC 2020: label = target (1 = melanoma; the 2020 set's only malignant class), for both tasks; "
        "excluded: atypical melanocytic proliferation"
    ]
    return _Rows(list(kept["image_name"].astype(str).str.strip()), labels, source_labels, kept, notes)


def _metadata_2019(tree: FileTree, meta: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """Join ISIC_2019_Training_Metadata.csv (lesion_id, age ...) when it is there."""
    meta_csv = next(
        (u for u in tree.top_level(".csv") if storage.name(u).lower() == "isic_2019_training_metadata.csv"),
        None,
    )
    if meta_csv is None:
        return meta, False
    extra = read_csv(meta_csv)
    if "image" not in extra.columns:
        raise wrong_columns(
            meta_csv, "image, lesion_id, age_approx, sex, anatom_site_general", list(extra.columns)
        )
    extra = extra.drop_duplicates("image").set_index("image")
    meta = meta.join(extra.drop(columns=[c for c in extra.columns if c in meta.columns]), on="image")
    return meta.fillna(""), True


def _rows_2019(
    tree: FileTree, gt: pd.DataFrame, task: str, index: dict[str, str], excluded: list[dict[str, object]]
) -> _Rows:
    classes = [c for c in CHALLENGE_2019_CLASSES if c in gt.columns]
    onehot = gt[classes].apply(pd.to_numeric, errors="coerce").fillna(0.0).to_numpy() >= 0.5
    keep_list, names, labels, source_labels = [], [], [], []
    for pos in range(len(gt)):
        hits = [classes[k] for k in onehot[pos].nonzero()[0]]
        name = str(gt["image"].iat[pos]).strip()
        label, reason = (
            POLICY_2019.decide(hits[0], task)
            if len(hits) == 1
            else (None, f"{len(hits)} diagnosis columns set ({hits}); expected exactly one")
        )
        if label is None:
            excluded.append(
                {
                    "image_uri": index.get(name, name),
                    "source_label": "+".join(hits),
                    "reason": reason,
                    "row": pos + 1,
                }
            )
            continue
        keep_list.append(pos)
        names.append(name)
        labels.append(label)
        source_labels.append(hits[0])
    meta, has_metadata = _metadata_2019(tree, gt.iloc[keep_list].reset_index(drop=True))
    meta["diagnosis"] = [POLICY_2019.names[c] for c in source_labels]
    if "lesion_id" in meta.columns:
        meta["clinic"] = [
            next((o for prefix, o in SOURCES_2019.items() if str(v).startswith(prefix)), "")
            for v in meta["lesion_id"]
        ]
    year = "2018" if "AKIEC" in classes else "2019"
    notes = [
        POLICY_2019.note(task).replace("ISIC 2019", f"ISIC {year}")
        + ("" if has_metadata else "; no ISIC_2019_Training_Metadata.csv, so no lesion groups")
    ]
    return _Rows(names, labels, source_labels, meta, notes)


def load(tree: FileTree, task: str, csv: str) -> Loaded:
    """ISIC 2020 (target column) or 2019 (one-hot diagnosis) challenge training CSVs."""
    gt = read_csv(csv)
    cols = list(gt.columns)
    index = tree.image_index()
    excluded_rows: list[dict[str, object]] = []
    if is_2020(cols):
        rows = _rows_2020(gt, index, excluded_rows)
    elif is_2019(cols):
        rows = _rows_2019(tree, gt, task, index, excluded_rows)
    else:
        raise wrong_columns(
            csv,
            "ISIC 2020 image_name,patient_id,target[,diagnosis,benign_malignant] or ISIC 2019 "
            f"image,{','.join(CHALLENGE_2019_CLASSES)}",
            cols,
        )
    uris = lookup_images(index, rows.names, csv, tree)
    mapping = dict(zip(rows.source_labels, rows.labels, strict=True))
    out = pd.DataFrame(
        {
            "image_uri": uris,
            "label": rows.labels,
            "source_label": rows.source_labels,
            "image_name": rows.names,
        }
    )
    for col in ("patient_id", "lesion_id", "diagnosis", "clinic"):
        if col in rows.meta.columns:
            out[col] = rows.meta[col].astype(str).str.strip().to_numpy()
    carry_metadata(out, rows.meta)
    return Loaded(out, excluded_frame(excluded_rows), mapping, rows.notes)
