"""Layout ``challenge``: ISIC 2020 (``train.csv`` / ``ISIC_2020_Training_GroundTruth.csv``:
``image_name``, ``target``) or ISIC 2019 (``ISIC_2019_Training_GroundTruth.csv``: ``image`` + one-hot
diagnosis columns, optional ``ISIC_2019_Training_Metadata.csv`` with ``lesion_id``).
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

# ISIC 2019 one-hot classes. Malignant: melanoma, basal cell carcinoma, squamous cell carcinoma and
# AK. AK is a documented choice: the 2019 "AK" class holds actinic keratoses *and* Bowen's disease
# (squamous cell carcinoma in situ), lesions that are treated, not left alone; calling the class
# benign would teach the model that intraepithelial carcinoma is harmless. UNK has no diagnosis and
# is excluded.
CHALLENGE_2019_CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
CHALLENGE_2019_MALIGNANT = frozenset({"MEL", "BCC", "SCC", "AK"})
CHALLENGE_2019_EXCLUDED = frozenset({"UNK"})


def is_2020(columns: list[str]) -> bool:
    return {"image_name", "target"} <= set(columns)


def is_2019(columns: list[str]) -> bool:
    return {"image", "MEL", "NV"} <= set(columns)


def accepts(columns: list[str]) -> bool:
    return is_2020(columns) or is_2019(columns)


class _Rows(NamedTuple):
    """The rows a challenge CSV keeps, and the metadata frame aligned with them."""

    names: list[str]
    labels: list[int]
    source_labels: list[str]
    meta: pd.DataFrame
    notes: list[str]


def _rows_2020(gt: pd.DataFrame, index: dict[str, str], excluded: list[dict[str, object]]) -> _Rows:
    target = gt["target"].astype(str).str.strip()
    keep = target.isin(["0", "1"]).to_numpy()
    for pos in (~keep).nonzero()[0]:
        excluded.append(
            {
                "image_uri": index.get(gt["image_name"].iat[pos], gt["image_name"].iat[pos]),
                "source_label": target.iat[pos],
                "reason": f"target {target.iat[pos]!r} is not 0/1",
                "row": int(pos) + 1,
            }
        )
    kept = gt[keep].reset_index(drop=True)
    labels = [int(v) for v in kept["target"].astype(str).str.strip()]
    if "benign_malignant" in kept.columns:
        source_labels = list(kept["benign_malignant"].astype(str).str.strip())
    else:
        source_labels = [str(y) for y in labels]
    notes = ["ISIC 2020: label = target (1 = melanoma; the 2020 set's only malignant class), for both tasks"]
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
    extra.columns = [str(c).strip() for c in extra.columns]
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
    positives = set(["MEL"] if task == "melanoma" else CHALLENGE_2019_MALIGNANT)
    keep_list, names, labels, source_labels = [], [], [], []
    for pos in range(len(gt)):
        hits = [classes[k] for k in onehot[pos].nonzero()[0]]
        name = str(gt["image"].iat[pos]).strip()
        if len(hits) != 1 or hits[0] in CHALLENGE_2019_EXCLUDED:
            reason = (
                f"diagnosis {hits[0]} (unknown) is excluded, never folded into benign"
                if len(hits) == 1
                else f"{len(hits)} diagnosis columns set ({hits}); expected exactly one"
            )
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
        labels.append(int(hits[0] in positives))
        source_labels.append(hits[0])
    meta, has_metadata = _metadata_2019(tree, gt.iloc[keep_list].reset_index(drop=True))
    positive_text = (
        "melanoma = MEL"
        if task == "melanoma"
        else f"malignant = {', '.join(sorted(CHALLENGE_2019_MALIGNANT))}"
    )
    notes = [
        f"ISIC 2019: {positive_text}; UNK excluded"
        + ("" if has_metadata else "; no ISIC_2019_Training_Metadata.csv, so no lesion groups")
    ]
    return _Rows(names, labels, source_labels, meta, notes)


def load(tree: FileTree, task: str, csv: str) -> Loaded:
    """ISIC 2020 (target column) or 2019 (one-hot diagnosis) challenge training CSVs."""
    gt = read_csv(csv)
    gt.columns = [str(c).strip() for c in gt.columns]
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
    for col in ("patient_id", "lesion_id", "diagnosis"):
        if col in rows.meta.columns:
            out[col] = rows.meta[col].astype(str).str.strip().to_numpy()
    carry_metadata(out, rows.meta)
    return Loaded(out, excluded_frame(excluded_rows), mapping, rows.notes)
