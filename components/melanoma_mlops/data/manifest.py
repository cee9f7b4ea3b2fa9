"""The manifest: the unit that flows between steps (one row per image), never pixel arrays.

Columns:
  image_uri  local path or s3:// URI of the encoded image
  label      0 / 1: the task's classes (benign / malignant; not melanoma / melanoma)
  sha256     hash of the file bytes (exact-duplicate detection, data fingerprint)
  width, height
  group_id   lesion/patient/duplicate-cluster id; no group may span two splits
  split      train / val / test once split, empty before
Extra columns (source_label, mask_uri, ...) are carried along untouched.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pandas as pd

from melanoma_mlops.artifacts import MANIFEST_COLUMNS, MANIFEST_TEXT_COLUMNS, SPLITS, class_keys
from melanoma_mlops.errors import DataError

logger = logging.getLogger(__name__)

COLUMNS = list(MANIFEST_COLUMNS)
__all__ = ["COLUMNS", "SPLITS", "class_counts", "fingerprint", "read", "write"]


def read(path: str | Path) -> pd.DataFrame:
    """Read a manifest CSV written by :func:`write`, checking the required columns."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest {path} does not exist: run the step that writes it first")
    text = dict.fromkeys(MANIFEST_TEXT_COLUMNS, str)
    df = pd.read_csv(path, dtype=text, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"manifest {path} lacks columns {missing}; expected at least {COLUMNS}")
    df["label"] = df["label"].astype(int)
    return df


def write(df: pd.DataFrame, path: str | Path) -> None:
    """Write a manifest as CSV with the required columns first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = [c for c in df.columns if c not in COLUMNS]
    df[COLUMNS + extra].to_csv(path, index=False)


def fingerprint(df: pd.DataFrame) -> str:
    """A content hash of the dataset: sorted (sha256, label) pairs, independent of paths and order."""
    pairs = sorted(zip(df["sha256"].astype(str), df["label"].astype(int), strict=True))
    digest = hashlib.sha256()
    for sha, label in pairs:
        digest.update(f"{sha}:{label}\n".encode())
    return digest.hexdigest()


def class_counts(df: pd.DataFrame, task: str = "malignant") -> dict[str, int]:
    """Counts per class, named as the task names its classes in logs and MLflow names
    (``benign``/``malignant``; ``not_melanoma``/``melanoma`` with ``--task melanoma``)."""
    counts = df["label"].value_counts()
    negative, positive = class_keys(task)
    return {negative: int(counts.get(0, 0)), positive: int(counts.get(1, 0))}
