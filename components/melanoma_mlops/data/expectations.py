"""The Great Expectations suite every data source must pass before anything is split or trained.

The suite runs on the *inspected* manifest (one row per image with the per-file ``error``, size,
mode and duplicate-audit columns added by :mod:`melanoma_mlops.data.validation`), so each failed
expectation can name the offending files. Its Data Docs HTML is written to a folder of the
caller's choice whatever the outcome.

Some expectations restate what the loaders already guarantee (at least one row, labels in {0, 1},
both classes): they are kept as the contract of the manifest for any producer, and
``tests/unit/test_expectations.py`` breaks each of them at the GX level to show they can fail.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import great_expectations as gx
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig

from melanoma_mlops.data.images import ACCEPTED_MODES

logger = logging.getLogger(__name__)

SUITE_NAME = "melanoma_manifest"
MAX_LISTED = 10
#: Metadata ranges checked wherever a layout carries the column (the loaders name it ``age``;
#: a manifest CSV may keep the ISIC spelling ``age_approx``).
RANGES = {"age": (0, 120), "age_approx": (0, 120)}


def build_suite(df: pd.DataFrame, min_image_size: int) -> gx.ExpectationSuite:
    """The expectations for this manifest (grouping and metadata checks only where they apply)."""
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
        e.ExpectColumnValuesToBeInSet(column="mode", value_set=sorted(ACCEPTED_MODES)),
        e.ExpectColumnValuesToBeInSet(column="dup_label_conflict", value_set=[False]),
    ]
    if "group_kind" in df.columns and df["group_kind"].isin(["patient", "lesion"]).any():
        checks.append(
            e.ExpectColumnValuesToNotBeNull(column="source_group", meta={"why": "grouping column set"})
        )
    for column, (lo, hi) in RANGES.items():
        if column in df.columns:
            checks.append(
                e.ExpectColumnValuesToBeBetween(
                    column=column, min_value=lo, max_value=hi, meta={"why": "plausible metadata"}
                )
            )
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
    docs_dir = docs_dir.resolve()  # GX refuses a relative base_directory
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
    suite = ctx.suites.add(build_suite(df, min_image_size))
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
