"""Layout ``folder``: ``benign/`` and ``malignant/`` class folders (any case), optionally inside
``train/``, ``test/``, ``val/`` ... as in Kaggle exports, merged (kept in ``source_split``) because we
re-split by group. ``masks/<class>/`` beside the class folders fills ``mask_uri``.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import pandas as pd

from melanoma_mlops.data.sources.common import (
    IMAGE_EXTENSIONS,
    MASK_FOLDERS,
    FileTree,
    Loaded,
    excluded_frame,
)
from melanoma_mlops.errors import DataError

CLASS_FOLDERS = {"benign": 0, "malignant": 1}
SPLIT_FOLDERS = frozenset({"train", "test", "val", "valid", "validation"})


def claims(tree: FileTree) -> bool:
    """A folder is this layout when some file sits below a benign/ or malignant/ folder."""
    return any(p.lower() in CLASS_FOLDERS for f in tree.files for p in tree.rel(f).split("/")[:-1])


def _sort_files(
    tree: FileTree,
) -> tuple[dict[tuple[str, ...], str], list[tuple[str, list[str], int]], list[dict[str, object]]]:
    """(masks by key, images with their class folder position, excluded files with the reason)."""
    masks: dict[tuple[str, ...], str] = {}
    images: list[tuple[str, list[str], int]] = []
    excluded: list[dict[str, object]] = []
    for uri in tree.files:
        parts = tree.rel(uri).split("/")
        lowered = [p.lower() for p in parts[:-1]]
        cls_pos = next((i for i, p in enumerate(lowered) if p in CLASS_FOLDERS), None)
        suffix = PurePosixPath(parts[-1]).suffix.lower()
        if cls_pos is not None and any(p in MASK_FOLDERS for p in lowered[:cls_pos]):
            m = lowered.index(next(p for p in lowered[:cls_pos] if p in MASK_FOLDERS))
            if suffix in IMAGE_EXTENSIONS:
                masks[
                    (*lowered[:m], lowered[cls_pos], *parts[cls_pos + 1 : -1], PurePosixPath(parts[-1]).stem)
                ] = uri
        elif cls_pos is None:
            if suffix in IMAGE_EXTENSIONS and not MASK_FOLDERS & set(lowered):
                excluded.append(
                    {
                        "image_uri": uri,
                        "source_label": "/".join(parts[:-1]),
                        "reason": "image outside a benign/ or malignant/ folder: its class is unknown",
                    }
                )
        elif suffix not in IMAGE_EXTENSIONS:
            excluded.append(
                {
                    "image_uri": uri,
                    "source_label": parts[cls_pos],
                    "reason": f"not an image file (extension {suffix or 'none'!r}; accepted: "
                    f"{', '.join(sorted(IMAGE_EXTENSIONS))})",
                }
            )
        else:
            images.append((uri, parts, cls_pos))
    return masks, images, excluded


def load(tree: FileTree, task: str, csv: str = "") -> Loaded:
    """Class folders, optionally under train/test/val folders; masks/<class>/ fills mask_uri."""
    if task != "malignant":
        raise DataError(
            f"task {task!r} needs a diagnosis per image, which class folders under {tree.root} do not "
            "carry (only benign/malignant): use task='malignant' or an ISIC metadata export"
        )
    masks, images, excluded = _sort_files(tree)
    rows = []
    mapping: dict[str, int] = {}
    for uri, parts, cls_pos in images:
        cls = parts[cls_pos]
        label = CLASS_FOLDERS[cls.lower()]
        mapping[cls] = label
        lowered = [p.lower() for p in parts[:cls_pos]]
        key = (*lowered, cls.lower(), *parts[cls_pos + 1 : -1], PurePosixPath(parts[-1]).stem)
        rows.append(
            {
                "image_uri": uri,
                "label": label,
                "source_label": cls,
                "mask_uri": masks.get(key, ""),
                "source_split": next((p for p in reversed(lowered) if p in SPLIT_FOLDERS), ""),
            }
        )
    notes = []
    splits = sorted({r["source_split"] for r in rows if r["source_split"]})
    if splits:
        notes.append(f"merged the source's {'/'.join(splits)} folders: we re-split by group")
    return Loaded(pd.DataFrame(rows), excluded_frame(excluded), mapping, notes)
