"""What a finished local run recorded, read back from MLflow: the figures the CLI prints."""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from melanoma_mlops import EXPERIMENT_NAME, envvars, tracking, tracking_client, ui_links
from melanoma_mlops.artifacts import SUBGROUPS_FILE, TASK_CLASSES
from melanoma_mlops.errors import MelanomaError
from melanoma_mlops.evaluation.metrics import HEADLINE_KEYS
from melanoma_mlops.experiments.ablation.design import ABLATION_EXPERIMENT, PIPELINE_TAG
from melanoma_mlops.experiments.ablation.report import REPORT_CSV, REPORT_JSON, REPORT_MD, TRIALS_CSV
from melanoma_mlops.experiments.ablation.runs import ablation_experiments


@dataclass
class LocalRunResult:
    parent_run_id: str
    model_version: str
    metrics: dict[str, float]
    seconds: float
    promotion: list[str]
    run_name: str = ""
    #: Where the run is recorded, and its page in the MLflow UI (taken while the run's store is set).
    tracking_uri: str = ""
    url: str = ""
    #: The experiment's runs table, the headline test metrics as columns.
    runs_url: str = ""
    #: Trained on the generated demo set (the parent's data.synthetic tag).
    synthetic: bool = False
    #: Lines the console showed (the step and epoch lines); the full log is at ``log_path``.
    console_lines: int = 0
    log_path: Path | None = None
    #: Old run folders pruned from the pipeline root after this run.
    pruned: list[Path] = field(default_factory=list)
    #: The test figures by subgroup, one line per slice (:func:`subgroup_lines`).
    subgroups: list[str] = field(default_factory=list)


@dataclass
class AblationResult:
    ablation_run_id: str
    markdown: str
    comparison: dict[str, Any]
    report_dir: Path
    seconds: float


#: Where ``make ui`` / ``melanoma-mlops mlflow-server`` serve the embedded store.
LOCAL_UI = ui_links.LOCAL_UI


def run_url(run_id: str) -> str:
    """The run's page in the MLflow UI, opened in the model-training view (:mod:`melanoma_mlops.ui_links`)."""
    try:
        experiment_id = MlflowClient().get_run(run_id).info.experiment_id
    except Exception:  # noqa: BLE001 - a link without the experiment still finds the run
        experiment_id = None
    return ui_links.run_url(run_id, experiment_id, tracking_client.tracking_uri())


def find_parent_run(run_name: str) -> str:
    client = MlflowClient()
    exp = client.get_experiment_by_name(EXPERIMENT_NAME)
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"attributes.run_name = {tracking.quote(run_name)} and tags.pipeline = 'two-stage'",
        max_results=1,
    )
    if not runs:
        raise MelanomaError(f"no MLflow parent run named {run_name!r} in {tracking_client.tracking_uri()}")
    return runs[0].info.run_id


def promotion_lines(model_name: str, version: str) -> list[str]:
    """What the promote step decided, from the gate tags it left on the version."""
    client = MlflowClient()
    mv = client.get_model_version(model_name, version)
    action = mv.tags.get("gate.action", "not gated")
    lines = [f"promotion gate: {action} (aliases: {', '.join('@' + a for a in mv.aliases) or 'none'})"]
    if mv.tags.get("gate.reason"):
        lines.append(f"reason: {mv.tags['gate.reason']}")
    return lines


def _interval(row: pd.Series, key: str) -> str:
    value, low, high = (row.get(k) for k in (key, f"{key}_ci_low", f"{key}_ci_high"))
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    if low is None or high is None or not (math.isfinite(float(low)) and math.isfinite(float(high))):
        return f"{float(value):.3f}"
    return f"{float(value):.3f} [{float(low):.3f}, {float(high):.3f}]"


def subgroup_lines(parent_run_id: str, task: str = "malignant") -> list[str]:
    """The evaluate step's subgroup table (``evaluation/subgroups.csv`` on the parent), as the console
    shows it: AUC and sensitivity with their 95% intervals, or why a slice has none."""
    try:
        # One small file: no progress bar on the console between the figures.
        with (
            tempfile.TemporaryDirectory() as tmp,
            envvars.pinned({"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}),
        ):
            local = MlflowClient().download_artifacts(parent_run_id, f"evaluation/{SUBGROUPS_FILE}", tmp)
            table = pd.read_csv(local, dtype={"subgroup": str, "value": str}, keep_default_na=False)
    except (MlflowException, OSError, ValueError):
        return []
    return subgroup_table_lines(table, task, f"evaluation/{SUBGROUPS_FILE}")


def subgroup_table_lines(table: pd.DataFrame, task: str, where: str) -> list[str]:
    """A subgroups.csv table (the evaluate step's or external validation's) as the console shows it;
    ``where`` names the file that holds all its figures."""
    rows = table[table["subgroup"] != "all"]
    if rows.empty:
        return []
    positive = TASK_CLASSES.get(task, TASK_CLASSES["malignant"])[1]
    names = [f"{r['subgroup']}={r['value']}" for _, r in rows.iterrows()]
    width = max(len(n) for n in names)
    lines = [f"by subgroup (AUC and sensitivity, 95% CI; all figures in {where}):"]
    for name, (_, r) in zip(names, rows.iterrows(), strict=True):
        counts = f"n={int(r['n']):<4} {int(r['positives']):>3} {positive}"
        figures = (
            "insufficient (too few to judge)"
            if r["status"] == "insufficient"
            else f"AUC {_interval(r, 'auc_roc')}  sensitivity {_interval(r, 'sensitivity')}"
        )
        lines.append(f"  {name:<{width}}  {counts}  {figures}")
    return lines


def main_run(parent: str, version: str, model_name: str, seconds: float) -> LocalRunResult:
    run = MlflowClient().get_run(parent)
    return LocalRunResult(
        parent,
        version,
        run.data.metrics,
        seconds,
        promotion_lines(model_name, version),
        run_name=run.info.run_name,
        synthetic=run.data.tags.get("data.synthetic") == "true",
        tracking_uri=tracking_client.tracking_uri(),
        url=run_url(parent),
        runs_url=ui_links.runs_table_url(run.info.experiment_id, tracking_client.tracking_uri()),
        subgroups=subgroup_lines(parent, run.data.params.get("task", "malignant")),
    )


def summary_lines(result: LocalRunResult) -> list[str]:
    """The figures printed at the end of ``melanoma-mlops run``."""
    m: dict[str, Any] = result.metrics
    lines = [f"test metrics at threshold {m.get('threshold', float('nan')):.4f} (chosen on validation):"]
    for key in HEADLINE_KEYS:
        if f"test/{key}" in m:
            ci = ""
            if f"test/{key}_ci_low" in m:
                ci = f"  95% CI [{m[f'test/{key}_ci_low']:.4f}, {m[f'test/{key}_ci_high']:.4f}]"
            lines.append(f"  {key:<18} {m[f'test/{key}']:.4f}{ci}")
    lines.extend(result.subgroups)
    uri = result.tracking_uri or tracking_client.tracking_uri()
    lines.append(f"MLflow run {result.run_name!r} ({result.parent_run_id}, tracking URI {uri})")
    lines.append(f"  {result.url or run_url(result.parent_run_id)}")
    if result.runs_url:
        lines.append(f"  all runs, test metrics as columns: {result.runs_url}")
        lines.append("  which run is better: melanoma-mlops compare --last 2")
    lines.append(f"registered model version: {result.model_version}")
    lines.extend(f"  {line}" for line in result.promotion)
    lines.append(f"pipeline wall time: {result.seconds:.0f} s")
    if result.log_path is not None:
        lines.append(f"full log: {result.log_path}")
    if result.pruned:
        lines.append(f"pruned {len(result.pruned)} old run folder(s) from the pipeline root (--keep-outputs)")
    return lines


def ablation_run(ablation_run_id: str, report_dir: str | Path, seconds: float) -> AblationResult:
    """Download the comparison the ablation logged into ``report_dir``."""
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    MlflowClient().download_artifacts(ablation_run_id, "ablation", str(out))
    folder = out / "ablation"
    comparison = json.loads((folder / REPORT_JSON).read_text())
    return AblationResult(
        ablation_run_id, (folder / REPORT_MD).read_text(), comparison, folder.resolve(), seconds
    )


def fail_open_ablation_runs(run_name: str) -> None:
    """Mark the ablation parent and its trials FAILED if a step died before closing them."""
    client = MlflowClient()
    exp = client.get_experiment_by_name(ABLATION_EXPERIMENT)
    if exp is None:
        return
    name = tracking.quote(run_name)
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"attributes.run_name = {name} and tags.pipeline = {tracking.quote(PIPELINE_TAG)}",
    )
    for parent in runs:
        for run in [parent, *tracking.descendants(client, parent.info.run_id, ablation_experiments(client))]:
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, status="FAILED")


def ablation_summary_lines(result: AblationResult) -> list[str]:
    """What ``melanoma-mlops ablation`` prints after the table."""
    return [
        f"MLflow ablation run: {result.ablation_run_id}  (experiment {ABLATION_EXPERIMENT}, "
        f"tracking URI {tracking_client.tracking_uri()})",
        f"report files ({REPORT_MD}, {REPORT_CSV}, {REPORT_JSON}, {TRIALS_CSV}) in {result.report_dir}",
        "no model was registered (the ablation has no register step)",
        f"pipeline wall time: {result.seconds:.0f} s",
    ]
