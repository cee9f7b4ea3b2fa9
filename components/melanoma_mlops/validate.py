"""The validate step: data source -> inspected, deduplicated manifest, checked by Great Expectations.

Every image is opened once (streamed, hashed in parallel). The manifest is then validated with a
Great Expectations suite; its Data Docs HTML is written next to the manifest whatever the outcome,
and a failed expectation stops the run with a message that lists what failed and the offending
files. Exact and near duplicates are grouped so they can never straddle two splits.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import great_expectations as gx
import mlflow
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig

from . import dedup, demo_data, images, manifest, sources, tracking
from .errors import DataError

logger = logging.getLogger(__name__)

SUITE_NAME = "melanoma_manifest"
MAX_LISTED = 10


@dataclass
class ValidationOutcome:
    success: bool
    manifest: pd.DataFrame
    failures: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    docs_index: Path | None = None
    excluded: pd.DataFrame = field(default_factory=pd.DataFrame)
    audit: dedup.DuplicateAudit | None = None


def _suite(df: pd.DataFrame, min_image_size: int) -> gx.ExpectationSuite:
    e = gx.expectations
    suite = gx.ExpectationSuite(name=SUITE_NAME)
    checks: list[gx.expectations.Expectation] = [
        e.ExpectTableRowCountToBeBetween(min_value=1),
        e.ExpectColumnValuesToBeNull(column="error", meta={"why": "every file exists and decodes"}),
        e.ExpectColumnValuesToBeInSet(column="label", value_set=[0, 1]),
        e.ExpectColumnDistinctValuesToContainSet(
            column="label", value_set=[0, 1], meta={"why": "both classes"}
        ),
        e.ExpectColumnValuesToBeBetween(column="min_side", min_value=min_image_size),
        e.ExpectColumnValuesToBeInSet(column="mode", value_set=sorted(images.ACCEPTED_MODES)),
        e.ExpectColumnValuesToBeInSet(column="dup_label_conflict", value_set=[False]),
        e.ExpectColumnValuesToNotBeNull(column="sha256"),
    ]
    if df["group_kind"].isin(["patient", "lesion"]).any():
        checks.append(
            e.ExpectColumnValuesToNotBeNull(column="source_group", meta={"why": "grouping column set"})
        )
    for column, lo, hi in (("age_approx", 0, 120),):
        if column in df.columns:
            checks.append(e.ExpectColumnValuesToBeBetween(column=column, min_value=lo, max_value=hi))
    for check in checks:
        suite.add_expectation(check)
    return suite


def _describe_failure(result: Any, df: pd.DataFrame) -> str:
    cfg = result.expectation_config
    kwargs = {k: v for k, v in cfg.kwargs.items() if k not in ("batch_id", "result_format")}
    column = kwargs.pop("column", None)
    args = ([column] if column else []) + [f"{k}={v}" for k, v in kwargs.items()]
    what = f"{cfg.type}({', '.join(args)})"
    res = result.result or {}
    idx = res.get("unexpected_index_list") or []
    lines = [f"FAILED {what}: {res.get('unexpected_count', '')} unexpected".rstrip()]
    if idx:
        for i in idx[:MAX_LISTED]:
            row = df.loc[i]
            detail = row.get("error") if column == "error" else row.get(column) if column else ""
            lines.append(f"    {row['image_uri']}: {detail}")
        if len(idx) > MAX_LISTED:
            lines.append(f"    ... and {len(idx) - MAX_LISTED} more (see the Data Docs report)")
    elif "observed_value" in res:
        lines.append(f"    observed: {res['observed_value']}")
    return "\n".join(lines)


def run_expectations(
    df: pd.DataFrame, min_image_size: int, docs_dir: Path
) -> tuple[bool, list[str], Path | None]:
    """Validate the inspected manifest with GX; write Data Docs to ``docs_dir``."""
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    docs_dir.mkdir(parents=True, exist_ok=True)
    ctx.add_data_docs_site(
        site_name="validation",
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    batch_def = (
        ctx.data_sources.add_pandas("source")
        .add_dataframe_asset("manifest")
        .add_batch_definition_whole_dataframe("all")
    )
    suite = ctx.suites.add(_suite(df, min_image_size))
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(data=batch_def, suite=suite, name="manifest"))
    checkpoint = ctx.checkpoints.add(
        gx.Checkpoint(
            name="validate",
            validation_definitions=[vd],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
            result_format={"result_format": "COMPLETE"},
        )
    )
    # GX's pandas engine reports positional indexes; keep them aligned with df.loc.
    result = checkpoint.run(batch_parameters={"dataframe": df.reset_index(drop=True)})
    failures = [
        _describe_failure(r, df.reset_index(drop=True))
        for run in result.run_results.values()
        for r in run.results
        if not r.success
    ]
    index = docs_dir / "index.html"
    return bool(result.success), failures, index if index.exists() else None


def inspect_source(src: sources.SourceResult) -> pd.DataFrame:
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
    data: str, min_image_size: int, docs_dir: str | Path, layout: str = "auto", task: str = "malignant"
) -> ValidationOutcome:
    """Build and validate the manifest of a data source (pure: no MLflow)."""
    src = sources.load_source(data, layout=layout, task=task)
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


def validate_step(
    data: str,
    manifest_path: str,
    docs_dir: str,
    report_html: str,
    *,
    min_image_size: int,
    layout: str = "auto",
    task: str = "malignant",
    run_name: str = "",
    kfp_run_id: str = "",
) -> str:
    """Pipeline step 1. Creates the MLflow parent run; returns its id for the later steps."""
    parent = tracking.start_pipeline_run(run_name, tags={"kfp.run_id": kfp_run_id, "data.source": data})
    params = {"data": data, "layout": layout, "task": task, "min_image_size": min_image_size}
    with tracking.step_run(parent, "validate", params):
        outcome = validate(data, min_image_size, docs_dir, layout=layout, task=task)
        if outcome.docs_index is not None:
            shutil.copyfile(outcome.docs_index, report_html)
            mlflow.log_artifacts(docs_dir, "data_docs")
        numeric = {
            k: v for k, v in outcome.summary.items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
        tracking.log_metrics({f"data/{k}": v for k, v in numeric.items()}, parent)
        with tempfile.TemporaryDirectory() as tmp:
            outcome.excluded.to_csv(Path(tmp) / "excluded.csv", index=False)
            if outcome.audit is not None:
                outcome.audit.pairs.to_csv(Path(tmp) / "duplicate_pairs.csv", index=False)
            mlflow.log_artifacts(tmp, "data")
        if not outcome.success:
            raise DataError(
                f"data validation of {data} failed ({len(outcome.failures)} expectation(s)):\n"
                + "\n".join(outcome.failures)
                + f"\nThe Data Docs report is in {docs_dir}. Fix or remove the files listed, then rerun."
            )
        final = outcome.manifest.drop(columns=["error", "min_side", "source_group", "dup_label_conflict"])
        manifest.write(final, manifest_path)
        fp = manifest.fingerprint(final)
        synthetic = str(demo_data.is_synthetic(data)).lower()
        mlflow.set_tags({"data.fingerprint": fp, "data.layout": outcome.summary.get("layout", "")})
        excluded = outcome.excluded["reason"].value_counts().to_dict() if len(outcome.excluded) else {}
        tracking.set_parent_tags(
            parent, {"data.excluded": json.dumps({str(k): int(v) for k, v in excluded.items()})}
        )
        tracking.set_parent_tags(
            parent,
            {
                "data.fingerprint": fp,
                "data.layout": outcome.summary.get("layout", ""),
                "data.synthetic": synthetic,
            },
        )
        mlflow.log_artifact(manifest_path, "data")
        logger.info(
            "manifest: %d images %s, fingerprint %s", len(final), manifest.class_counts(final), fp[:12]
        )
    return parent
