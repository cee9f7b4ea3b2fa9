"""The runs to compare, read from MLflow: found by id, name or ``--last N``, checked, their metrics and
the evaluate step's per-image predictions loaded; the comparison logged back on the newest run.

Every refusal is a :class:`~melanoma_mlops.errors.ConfigError` naming the run and what to pass
instead: a run that does not exist, one of another experiment, a step (child) run, a run that never
reached the evaluate step.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Sequence

import mlflow
import pandas as pd
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.tracking import MlflowClient

from melanoma_mlops import EXPERIMENT_NAME, envvars, tracking, tracking_client, ui_links
from melanoma_mlops.artifacts import PARENT_TAG, PREDICTIONS_FILE
from melanoma_mlops.data import manifest
from melanoma_mlops.errors import ConfigError, DataError
from melanoma_mlops.experiments.compare.comparison import Comparison, RunRecord, newest
from melanoma_mlops.experiments.compare.render import html_page

logger = logging.getLogger(__name__)

#: A parent run of the main pipeline carries this tag (tracking.start_pipeline_run).
PIPELINE_FILTER = "tags.pipeline = 'two-stage'"
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
#: Where the comparison is logged on the newest run.
ARTIFACT_DIR = "compare"


def _experiment(client: MlflowClient) -> str:
    exp = client.get_experiment_by_name(EXPERIMENT_NAME)
    if exp is None:
        raise ConfigError(
            f"no experiment {EXPERIMENT_NAME!r} in {tracking_client.tracking_uri()}: run the pipeline first "
            "(melanoma-mlops run), or point MLFLOW_TRACKING_URI at the store that holds your runs"
        )
    return exp.experiment_id


def _by_id(client: MlflowClient, run_id: str) -> Run | None:
    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            return None
        raise


def _by_name(client: MlflowClient, experiment_id: str, name: str) -> Run | None:
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"attributes.run_name = {tracking.quote(name)} and {PIPELINE_FILTER}",
        order_by=["attributes.start_time DESC"],
        max_results=20,
    )
    if len(runs) > 1:
        listed = ", ".join(r.info.run_id for r in runs)
        raise ConfigError(
            f"{len(runs)} runs are named {name!r} ({listed}): pass the run id of the one you mean"
        )
    return runs[0] if runs else None


def _checked(client: MlflowClient, experiment_id: str, ref: str, run: Run | None) -> Run:
    """``run`` if it is a parent run of the main pipeline with test metrics; else say what to pass."""
    if run is None or run.info.lifecycle_stage == "deleted":
        raise ConfigError(
            f"no pipeline run {ref!r} (by id or name) in experiment {EXPERIMENT_NAME!r} at "
            f"{tracking_client.tracking_uri()}: see `melanoma-mlops compare --last 5`, or the runs table"
        )
    rid = run.info.run_id
    if run.info.experiment_id != experiment_id:
        other = client.get_experiment(run.info.experiment_id).name
        raise ConfigError(
            f"run {rid} belongs to experiment {other!r}, not {EXPERIMENT_NAME!r}: compare compares runs of "
            "the main pipeline (the ablation writes its own comparison)"
        )
    parent = run.data.tags.get(PARENT_TAG)
    if parent:
        step = run.data.tags.get("step", "a step")
        raise ConfigError(
            f"run {rid} is the {step!r} step of pipeline run {parent}: pass the pipeline run {parent}"
        )
    if "test/auc_roc" not in run.data.metrics:
        raise ConfigError(
            f"run {rid} ({run.info.run_name}, {run.info.status}) has no test metrics: it stopped before its "
            f"evaluate step; finish it with `melanoma-mlops run --resume {rid}`, or compare other runs"
        )
    return run


def find_runs(client: MlflowClient, refs: Sequence[str] = (), last: int | None = None) -> list[Run]:
    """The parent runs to compare, in the order given (``--last N``: oldest first, so the newest is
    compared with the ones before it)."""
    experiment_id = _experiment(client)
    if last is not None:
        if refs:
            raise ConfigError("give run ids/names or --last N, not both")
        if last < 2:
            raise ConfigError(f"--last {last}: compare needs two or more runs")
        runs = client.search_runs(
            [experiment_id],
            filter_string=f"{PIPELINE_FILTER} and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=last,
        )
        if len(runs) < 2:
            raise ConfigError(
                f"{len(runs)} finished pipeline run(s) in experiment {EXPERIMENT_NAME!r}: compare needs two "
                "(run the pipeline again with one option changed, e.g. --stage2-lr 3e-05)"
            )
        return [_checked(client, experiment_id, r.info.run_id, r) for r in reversed(runs)]
    if len(refs) < 2:
        raise ConfigError(f"compare needs two or more runs (ids or names); got {len(refs)}: or use --last 2")
    found = []
    for ref in refs:
        run = _by_id(client, ref) if RUN_ID.match(ref) else None
        found.append(_checked(client, experiment_id, ref, run or _by_name(client, experiment_id, ref)))
    return found


def predictions_of(client: MlflowClient, run: Run) -> pd.DataFrame | None:
    """The evaluate step's ``evaluation/predictions.csv`` of a parent run, None when there is none."""
    steps = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = {tracking.quote(run.info.run_id)} and tags.step = 'evaluate' "
        "and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not steps:
        return None
    with (
        tempfile.TemporaryDirectory() as tmp,
        envvars.pinned({"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}),
    ):
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=steps[0].info.run_id, artifact_path=f"evaluation/{PREDICTIONS_FILE}", dst_path=tmp
            )
        except (MlflowException, OSError) as exc:
            logger.warning("run %s: no predictions (%s)", run.info.run_id, exc)
            return None
        df = manifest.read(local)
    if "score" not in df.columns:
        raise DataError(f"run {run.info.run_id}: {PREDICTIONS_FILE} has no score column")
    return df


def read_run(client: MlflowClient, run: Run) -> RunRecord:
    return RunRecord(
        run_id=run.info.run_id,
        name=run.info.run_name,
        start_time=int(run.info.start_time or 0),
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        predictions=predictions_of(client, run),
        status=run.info.status,
        url=ui_links.run_url(run.info.run_id, run.info.experiment_id, tracking_client.tracking_uri()),
    )


def read_runs(refs: Sequence[str] = (), last: int | None = None) -> list[RunRecord]:
    """Find, check and read the runs (the CLI's one call before :func:`comparison.compare`)."""
    # A read: point the client at the store, but create no experiment (tracking.configure would).
    tracking_client.apply_client_defaults()
    mlflow.set_tracking_uri(tracking_client.tracking_uri())
    client = MlflowClient()
    return [read_run(client, run) for run in find_runs(client, refs, last)]


def artifact_name(c: Comparison) -> str:
    return "_vs_".join(f"{label}-{run.run_id[:8]}" for label, run in zip(c.labels, c.runs, strict=True))


def log_comparison(c: Comparison, as_json: str) -> tuple[RunRecord, str]:
    """The HTML page (and the JSON) on the newest run, under ``compare/``; returns (run, HTML path)."""
    target = newest(c.runs)
    name = artifact_name(c)
    client = MlflowClient()
    path = f"{ARTIFACT_DIR}/{name}.html"
    client.log_text(target.run_id, html_page(c), path)
    client.log_text(target.run_id, as_json, f"{ARTIFACT_DIR}/{name}.json")
    return target, path


def compare_page(c: Comparison) -> str:
    """MLflow's own Compare page of the same runs (parameters side by side, metric charts)."""
    experiment_id = MlflowClient().get_run(c.runs[0].run_id).info.experiment_id
    return ui_links.compare_url([r.run_id for r in c.runs], experiment_id, tracking_client.tracking_uri())
