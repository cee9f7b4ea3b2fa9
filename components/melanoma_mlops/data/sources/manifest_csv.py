"""Layout ``manifest``: a CSV ``image_path,label[,group]`` (optional ``patient_id``, ``lesion_id``,
``mask_path``); paths relative to the CSV's folder, absolute, or ``s3://``; label 0/1 or
benign/malignant. Every label must be in the mapping: a typo is an error, never a guess.
"""

from __future__ import annotations

import pandas as pd

from melanoma_mlops import storage
from melanoma_mlops.data.sources.common import (
    MAX_LISTED,
    FileTree,
    Loaded,
    excluded_frame,
    missing_images_error,
    read_csv,
    resolve_path,
    wrong_columns,
)
from melanoma_mlops.errors import DataError

MANIFEST_LABELS = {"0": 0, "1": 1, "benign": 0, "malignant": 1}
REQUIRED = ("image_path", "label")


def accepts(columns: list[str]) -> bool:
    return set(REQUIRED) <= set(columns)


def _labels(df: pd.DataFrame, csv: str) -> tuple[list[int], dict[str, int]]:
    """0/1 per row and the spelling -> label mapping; any value outside the mapping is an error."""
    labels = []
    bad: list[str] = []
    mapping: dict[str, int] = {}
    for i, value in enumerate(df["label"]):
        norm = str(value).strip().lower()
        if norm not in MANIFEST_LABELS:
            bad.append(f"{value!r} in row {i + 1} (line {i + 2})")
            labels.append(-1)
            continue
        mapping[str(value).strip()] = MANIFEST_LABELS[norm]
        labels.append(MANIFEST_LABELS[norm])
    if bad:
        more = f" and {len(bad) - MAX_LISTED} more rows" if len(bad) > MAX_LISTED else ""
        raise DataError(
            f"{csv}: label {', '.join(bad[:MAX_LISTED])}{more} is not one of 0, 1, benign, malignant; "
            "fix the value (an uncertain diagnosis belongs in a separate file, not in benign)"
        )
    return labels, mapping


def _confine(tree: FileTree, csv: str, uris: list[str]) -> None:
    """Refuse paths that leave the data root, before any of them is opened or even stat'ed.

    A manifest is data from outside: ``../../etc/shadow`` or ``/home/x/other.jpg`` in it must not
    be read (and an image elsewhere on disk must not be trained on silently).
    """
    if tree.allow_outside_root:
        return
    outside = [u for u in uris if not tree.inside(u)]
    if outside:
        shown = ", ".join(outside[:MAX_LISTED])
        more = f" and {len(outside) - MAX_LISTED} more" if len(outside) > MAX_LISTED else ""
        raise DataError(
            f"{csv}: {len(outside)} path(s) point outside the data root {tree.root}: {shown}{more}. "
            "Move the images under the CSV's folder, or pass --allow-outside-root if that is intended"
        )


def load(tree: FileTree, task: str, csv: str) -> Loaded:
    """A user CSV image_path,label[,group]; labels must all be in the mapping (a typo is an error)."""
    if task != "malignant":
        raise DataError(
            f"task {task!r} needs a diagnosis column; the manifest CSV {csv} only has a 0/1 label"
        )
    df = read_csv(csv)
    df.columns = [str(c).strip() for c in df.columns]
    if not {"image_path", "label"} <= set(df.columns):
        raise wrong_columns(
            csv, "image_path,label and optionally group, patient_id, lesion_id, mask_path", list(df.columns)
        )
    base = storage.parent(csv)
    labels, mapping = _labels(df, csv)
    empty = [i + 1 for i, p in enumerate(df["image_path"]) if not str(p).strip()]
    if empty:
        raise DataError(f"{csv}: image_path is empty in rows {empty[:MAX_LISTED]}: fill or remove those rows")
    uris = [resolve_path(base, str(p).strip()) for p in df["image_path"]]
    masks = (
        [resolve_path(base, str(p).strip()) if str(p).strip() else "" for p in df["mask_path"]]
        if "mask_path" in df.columns
        else []
    )
    _confine(tree, csv, [*uris, *(m for m in masks if m)])
    known = set(tree.files)
    # Files under the CSV's folder were listed once; only paths outside it cost a request each.
    missing = [u for u in uris if u not in known and (u.startswith(tree.root + "/") or not storage.exists(u))]
    if missing:
        raise missing_images_error(csv, [storage.name(u) for u in missing])
    out = pd.DataFrame(
        {"image_uri": uris, "label": labels, "source_label": [str(v).strip() for v in df["label"]]}
    )
    for col in ("group", "patient_id", "lesion_id"):
        if col in df.columns:
            out[col] = df[col].astype(str).str.strip().to_numpy()
    if "mask_path" in df.columns:
        out["mask_uri"] = masks
    reserved = set(out.columns) | {
        "image_path",
        "label",
        "split",
        "sha256",
        "group_id",
        "group_kind",
        "mask_path",
    }
    for col in df.columns:
        if col not in reserved:
            out[col] = df[col].to_numpy()
    if "split" in df.columns:
        out["source_split"] = df["split"].to_numpy()
    return Loaded(out, excluded_frame([]), mapping, [])
