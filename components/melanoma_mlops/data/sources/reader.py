"""Read a data source (folder, CSV file or s3:// prefix) into one manifest: open it, pick its layout
from :mod:`.layouts`, load it, and finish the manifest (groups, column types, both classes present).

The layouts, the label policy and the groups are described in :mod:`melanoma_mlops.data.sources`.
"""

from __future__ import annotations

import logging
import os

import pandas as pd

from melanoma_mlops import storage
from melanoma_mlops.data.sources import confine, layouts
from melanoma_mlops.data.sources.common import (
    FileTree,
    SourceResult,
    assign_source_groups,
    is_utf8,
    printable,
    read_header,
)
from melanoma_mlops.errors import DataError

logger = logging.getLogger(__name__)

TASKS = ("malignant", "melanoma")
__all__ = ["TASKS", "load_source"]


def _open(data: str, allow_outside_root: bool = False) -> tuple[FileTree, str]:
    """The file index of the source's root folder, and the CSV when ``data`` names one."""
    if not str(data).strip():
        raise DataError("no data source given: pass a folder, a CSV file or an s3://bucket/prefix")
    if not is_utf8(str(data)):
        raise DataError(
            f"the data path {printable(str(data))} is not valid UTF-8 (bytes {os.fsencode(data)!r}): "
            "rename the folder or file"
        )
    source = storage.normalize(data)
    if not storage.exists(source):
        raise DataError(f"data path {data} does not exist: check the path (or bucket/prefix) and try again")
    csv = ""
    if storage.is_dir(source):
        root = source
    else:
        if not layouts.is_csv_name(source):
            raise DataError(f"data path {data} is a file but not a CSV: pass the folder or the metadata CSV")
        csv, root = source, storage.parent(source)
    if storage.is_s3(root):
        files, left_out = storage.list_files(root), []
    else:  # every entry resolved before anything is opened; links out of the root left out
        files, left_out = confine.walk_local(root, allow_outside_root)
    if not files:
        detail = f" ({len(left_out)} entries left out, e.g. {left_out[0]['reason']})" if left_out else ""
        raise DataError(
            f"{root} is empty: no images found (expected benign/ and malignant/ folders or a CSV){detail}"
        )
    return FileTree.listing(root, files, allow_outside_root, left_out), csv


def _finish(manifest: pd.DataFrame, excluded: pd.DataFrame, root: str, layout: str) -> pd.DataFrame:
    """Groups, column types and order; refuse a source without both classes."""
    if manifest.empty:
        detail = (
            f" ({len(excluded)} files excluded, e.g. {excluded['reason'].iat[0]})" if len(excluded) else ""
        )
        raise DataError(f"no usable images found in {root} with layout {layout!r}{detail}")
    manifest = assign_source_groups(manifest)
    for col in ("mask_uri", "patient_id", "lesion_id"):
        if col in manifest.columns:
            manifest[col] = manifest[col].fillna("").astype(str)
    manifest["label"] = manifest["label"].astype(int)
    _numeric_metadata(manifest)
    front = ["image_uri", "label", "source_label", "group_id", "group_kind"]
    manifest = manifest[front + [c for c in manifest.columns if c not in front]].reset_index(drop=True)
    classes = set(manifest["label"].unique())
    if len(classes) < 2:
        only = "malignant" if 1 in classes else "benign"
        raise DataError(
            f"only {only} images found in {root} ({len(manifest)} images, layout {layout!r}): a classifier "
            "needs both benign and malignant examples; check the class folders / label column"
        )
    return manifest


def load_source(
    data: str, layout: str = "auto", task: str = "malignant", *, allow_outside_root: bool = False
) -> SourceResult:
    """Read ``data`` (folder, CSV file or s3:// prefix) into a manifest; see the module docstring.

    ``allow_outside_root``: a manifest CSV may name images outside the folder holding it, and
    symlinks in a local source may lead out of it (both refused by default, before any such file is
    opened; a refused link is reported in ``excluded``).
    """
    if layout not in ("auto", *layouts.NAMES):
        raise DataError(f"layout {layout!r} is not one of auto, {', '.join(layouts.NAMES)}")
    if task not in TASKS:
        raise DataError(f"task {task!r} is not one of {', '.join(TASKS)}")
    tree, csv = _open(data, allow_outside_root)
    if csv:
        chosen = layouts.of_csv(csv, read_header(csv)) if layout == "auto" else layouts.get(layout)
    elif layout == "auto":
        chosen, csv = layouts.detect(tree)
    else:
        chosen = layouts.get(layout)
        csv = layouts.find_csv(tree, chosen)
    logger.info(
        "reading %s as layout %r (task %s)%s", tree.root, chosen.name, task, f" from {csv}" if csv else ""
    )
    loaded = chosen.load(tree, task, csv)
    excluded = loaded.excluded
    if tree.undecodable or tree.outside:
        excluded = pd.concat([excluded, tree.left_out_frame()], ignore_index=True)
    result = SourceResult(
        manifest=_finish(loaded.manifest, excluded, tree.root, chosen.name),
        layout=chosen.name,
        excluded=excluded,
        label_mapping=loaded.label_mapping,
        source=tree.root,
        task=task,
        notes=loaded.notes,
    )
    logger.debug("source summary: %s", result.summary())  # the validate step logs it once
    for note in result.notes:
        logger.info("source note: %s", note)
    if len(result.excluded):
        logger.warning(
            "%d files/rows excluded (label policy, entries left out of the listing): %s",
            len(result.excluded),
            result.excluded["reason"].value_counts().to_dict(),
        )
    return result


#: Metadata columns that are numbers whichever layout carries them (the suite checks their range).
NUMERIC_METADATA = ("age", "age_approx")


def _numeric_metadata(manifest: pd.DataFrame) -> None:
    """Ages as numbers (empty cells become missing); text that is not a number is named in a warning."""
    for col in NUMERIC_METADATA:
        if col not in manifest.columns:
            continue
        raw = manifest[col]
        values = pd.to_numeric(raw, errors="coerce")
        blank = raw.isna() | (raw.astype(str).str.strip() == "")
        bad = values.isna() & ~blank
        if bad.any():
            logger.warning(
                "%d %s value(s) are not numbers and are treated as missing, e.g. %r for %s",
                int(bad.sum()),
                col,
                raw[bad].iloc[0],
                manifest.loc[bad, "image_uri"].iloc[0],
            )
        manifest[col] = values
