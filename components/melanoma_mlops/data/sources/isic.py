"""Layout ``isic``: an ISIC Archive export, ``metadata.csv`` (``isic_id``, ``diagnosis_1``,
``lesion_id``, ``patient_id`` ...) with ``<isic_id>.jpg`` beside it. ``diagnosis_1`` Benign /
Malignant; Indeterminate and unknown values are excluded and reported, never folded into benign.
Lesion masks, when there are any, sit in a ``masks/`` folder named ``<isic_id>.png`` or
``<isic_id>_segmentation.png`` (the ISIC segmentation naming) and fill ``mask_uri``.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from melanoma_mlops.data.sources.common import (
    FileTree,
    Loaded,
    carry_metadata,
    excluded_frame,
    lookup_images,
    read_csv,
    wrong_columns,
)
from melanoma_mlops.errors import DataError

ISIC_LABELS = {"benign": 0, "malignant": 1}
# Finer ISIC diagnosis columns, coarsest first; melanoma-vs-rest reads these.
ISIC_FINE_DIAGNOSIS = ("diagnosis_2", "diagnosis_3", "diagnosis_4", "diagnosis_5", "diagnosis")
MELANOMA = re.compile(r"(?<!non-)(?<!non )\bmelanoma\b", re.IGNORECASE)


def isic_label_column(columns: list[str]) -> str | None:
    return next((c for c in ("diagnosis_1", "benign_malignant") if c in columns), None)


def accepts(columns: list[str]) -> bool:
    return "isic_id" in columns and isic_label_column(columns) is not None


def claims(columns: list[str]) -> bool:
    """A CSV with isic_id is an ISIC export, even one whose label column is missing (said on load)."""
    return "isic_id" in columns


def _check_columns(meta: pd.DataFrame, task: str, csv: str) -> tuple[str, list[str]]:
    """(the coarse label column, the finer diagnosis columns); refuse what this task cannot use."""
    label_col = isic_label_column(list(meta.columns))
    if "isic_id" not in meta.columns or label_col is None:
        raise wrong_columns(
            csv,
            "isic_id, diagnosis_1 (Benign/Malignant/Indeterminate; older exports: benign_malignant), "
            "and optionally lesion_id, patient_id, diagnosis_2..5, age_approx",
            list(meta.columns),
        )
    fine_cols = [c for c in ISIC_FINE_DIAGNOSIS if c in meta.columns]
    if task == "melanoma" and not fine_cols:
        raise DataError(
            "task 'melanoma' needs a finer diagnosis column naming Melanoma "
            f"({', '.join(ISIC_FINE_DIAGNOSIS)}) "
            f"but {csv} has only {list(meta.columns)}: export the metadata with the full diagnosis "
            "hierarchy, or use task='malignant'"
        )
    if task == "melanoma" and not any(MELANOMA.search(str(v)) for c in fine_cols for v in meta[c]):
        raise DataError(
            f"task 'melanoma': no value of {fine_cols} in {csv} names Melanoma, so melanoma-vs-rest "
            "would have no positive class; use task='malignant' or a metadata export that includes "
            "melanomas"
        )
    return label_col, fine_cols


def _kept_rows(
    meta: pd.DataFrame, task: str, label_col: str, fine_cols: list[str], index: dict[str, str]
) -> tuple[np.ndarray, list[dict[str, object]]]:
    """Which rows have a defined label; the rest are excluded with the reason, never folded."""
    coarse = meta[label_col].astype(str).str.strip()
    keep = coarse.str.lower().isin(list(ISIC_LABELS)).to_numpy().copy()
    excluded: list[dict[str, object]] = []

    def exclude(pos: int, reason: str) -> None:
        isic_id = meta["isic_id"].iat[pos]
        excluded.append(
            {
                "image_uri": index.get(isic_id, isic_id),
                "source_label": coarse.iat[pos],
                "reason": reason,
                "row": pos + 1,
            }
        )

    for pos in (~keep).nonzero()[0]:
        exclude(
            int(pos),
            f"{label_col} {coarse.iat[pos]!r} is not Benign/Malignant (indeterminate or missing): "
            "excluded, never folded into benign",
        )
    if task == "melanoma":
        # A malignant lesion without a finer diagnosis may or may not be a melanoma: calling it
        # "rest" would put unlabelled melanomas among the negatives.
        fine_known = (
            meta[fine_cols].astype(str).apply(lambda col: col.str.strip() != "").any(axis=1).to_numpy()
        )
        vague = keep & ~fine_known & (coarse.str.lower() == "malignant").to_numpy()
        for pos in vague.nonzero()[0]:
            exclude(
                int(pos),
                f"malignant without a finer diagnosis in {fine_cols}: whether it is a melanoma is unknown",
            )
        keep &= ~vague
    return keep, excluded


def load(tree: FileTree, task: str, csv: str) -> Loaded:
    """ISIC Archive export: diagnosis_1 Benign/Malignant; Indeterminate and unknown values excluded."""
    meta = read_csv(csv)
    meta.columns = [str(c).strip() for c in meta.columns]
    label_col, fine_cols = _check_columns(meta, task, csv)
    index = tree.image_index()
    keep, excluded_rows = _kept_rows(meta, task, label_col, fine_cols, index)
    kept = meta[keep].reset_index(drop=True)
    uris = lookup_images(index, list(kept["isic_id"]), csv, tree)
    if task == "melanoma":
        parts = kept[[label_col, *fine_cols]].astype(str).apply(lambda col: col.str.strip())
        source_labels = [" > ".join(v for v in row if v) for row in parts.itertuples(index=False)]
        labels = (
            parts[fine_cols].apply(lambda col: col.str.contains(MELANOMA)).any(axis=1).astype(int).tolist()
        )
    else:
        source_labels = list(kept[label_col].astype(str).str.strip())
        labels = [ISIC_LABELS[v.lower()] for v in source_labels]
    mapping = dict(zip(source_labels, labels, strict=True))
    out = pd.DataFrame({"image_uri": uris, "label": labels, "source_label": source_labels})
    out["isic_id"] = kept["isic_id"].to_numpy()
    for col in ("patient_id", "lesion_id", *fine_cols):
        if col in kept.columns:
            out[col] = kept[col].astype(str).str.strip().to_numpy()
    carry_metadata(out, kept)
    masks = tree.mask_index()
    if masks:
        out["mask_uri"] = [masks.get(i, "") for i in out["isic_id"]]
    notes = [f"label from {label_col}" + (f"; melanoma from {fine_cols}" if task == "melanoma" else "")]
    return Loaded(out, excluded_frame(excluded_rows), mapping, notes)
