"""The validate step: data source -> inspected, deduplicated manifest, checked by Great Expectations.

Every image is opened once (streamed, hashed in parallel). The manifest is then validated with a
Great Expectations suite; its Data Docs HTML is written next to the manifest whatever the outcome,
and a failed expectation stops the run with a message that lists what failed and the offending
files. Exact and near duplicates are grouped so they can never straddle two splits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from melanoma_mlops.artifacts import class_keys
from melanoma_mlops.data import dedup, images
from melanoma_mlops.data.expectations import run_expectations
from melanoma_mlops.data.sources.common import SourceResult
from melanoma_mlops.data.sources.reader import load_source
from melanoma_mlops.errors import DataError

logger = logging.getLogger(__name__)

#: Columns the inspection adds for the expectations only; the validated manifest drops them.
WORKING_COLUMNS = ("error", "min_side", "source_group", "dup_label_conflict")


@dataclass
class ValidationOutcome:
    success: bool
    manifest: pd.DataFrame
    failures: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    docs_index: Path | None = None
    excluded: pd.DataFrame = field(default_factory=pd.DataFrame)
    audit: dedup.DuplicateAudit | None = None

    def final_manifest(self) -> pd.DataFrame:
        """The manifest later steps read: without the columns only the expectations needed."""
        return self.manifest.drop(columns=list(WORKING_COLUMNS))

    def counts(self) -> dict[str, int | float]:
        """The summary's numbers (images, classes, duplicates, exclusions), for metrics; the classes
        named as the task names them (``data/not_melanoma`` with ``--task melanoma``)."""
        names = dict(zip(("benign", "malignant"), class_keys(str(self.summary.get("task", ""))), strict=True))
        return {
            names.get(k, k): v
            for k, v in self.summary.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }

    def exclusion_counts(self) -> dict[str, int]:
        """Excluded files or rows per reason."""
        if not len(self.excluded):
            return {}
        return {str(k): int(v) for k, v in self.excluded["reason"].value_counts().to_dict().items()}

    def raise_if_failed(self, data: str, docs_dir: str | Path) -> None:
        """A failed expectation stops the run: the message lists what failed and the offending files."""
        if not self.success:
            raise DataError(
                f"data validation of {data} failed ({len(self.failures)} expectation(s)):\n"
                + "\n".join(self.failures)
                + f"\nThe Data Docs report is in {docs_dir}. Fix or remove the files listed, then rerun."
            )


def inspect_source(src: SourceResult) -> pd.DataFrame:
    """Open every image of a source manifest; add hashes, size, mode and the per-file error."""
    df = src.manifest.reset_index(drop=True)
    infos = list(images.inspect_all(df["image_uri"].astype(str), total=len(df)))
    info = pd.DataFrame([i.__dict__ for i in infos]).drop(columns=["image_uri"])
    df = pd.concat([df, info], axis=1)
    df["min_side"] = df[["width", "height"]].min(axis=1).where(df["error"].isna())
    df["source_group"] = (
        df["group_id"].replace("", None)
        if df["group_kind"].isin(["patient", "lesion"]).any()
        else df["group_id"]
    )
    return df


def validate(
    data: str,
    min_image_size: int,
    docs_dir: str | Path,
    layout: str = "auto",
    task: str = "malignant",
    allow_outside_root: bool = False,
) -> ValidationOutcome:
    """Build and validate the manifest of a data source (pure: no MLflow)."""
    src = load_source(data, layout=layout, task=task, allow_outside_root=allow_outside_root)
    logger.info("source %s: layout %s, %s", data, src.layout, src.summary())
    df = inspect_source(src)
    ok = df["error"].isna()
    audit = dedup.audit_duplicates(df[ok].reset_index(drop=True))
    grouped = dedup.assign_groups(df[ok].reset_index(drop=True), audit)
    for column in ("group_id", "group_kind", "dup_cluster"):
        if column in grouped.columns:
            df.loc[ok, column] = grouped[column].to_numpy()
    conflict_uris = set(audit.conflicts.get("image_uri_a", [])) | set(audit.conflicts.get("image_uri_b", []))
    df["dup_label_conflict"] = df["image_uri"].isin(conflict_uris)
    df["split"] = ""
    success, failures, index = run_expectations(df, min_image_size, Path(docs_dir))
    summary = {
        **{k: v for k, v in src.summary().items() if not isinstance(v, dict)},
        **{f"dup_{k}": v for k, v in audit.summary().items()},
        "invalid_images": int((~ok).sum()),
    }
    summary["excluded_rows"] = len(src.excluded)
    return ValidationOutcome(success, df, failures, summary, index, src.excluded, audit)
