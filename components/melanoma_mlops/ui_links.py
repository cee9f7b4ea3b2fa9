"""The MLflow UI's addresses of what we print (a run, the runs table, a comparison, a model version),
each opening in the UI's *Model training* view, and the experiment tags the UI reads.

Two MLflow UI mechanisms, both MLflow's own:

- ``?workflowType=machine_learning``: MLflow 3's UI otherwise shows a page in the view its browser
  switch remembers, GenAI when unset (our servers also default the switch: ``tracking_server/ui_app``;
  the parameter makes a printed link right on any MLflow server).
- a *shared view* of the runs table: the experiment tag ``mlflow.sharedViewState.<key>`` holds the
  table's state as JSON, and ``?viewStateShareKey=<key>`` opens the table in it. MLflow has no
  per-experiment default for the table's columns (its default is Source, Models, Dataset), so the
  links we print open :data:`HEADLINE_VIEW` instead: the test metrics as columns, newest run first.

Ground floor: standard library only.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Sequence

#: Where ``make ui`` / ``melanoma-mlops mlflow-server`` serve the embedded store.
LOCAL_UI = "http://127.0.0.1:5000"
WORKFLOW_PARAM = "workflowType=machine_learning"
#: MLflow's experiment tag prefix of a shared runs-table view.
SHARED_VIEW_TAG_PREFIX = "mlflow.sharedViewState."
HEADLINE_VIEW = "melanoma-headline"
#: The runs table's columns in :data:`HEADLINE_VIEW` (the evaluate step's ``test/<metric>`` names).
HEADLINE_COLUMNS = (
    "test/auc_roc",
    "test/auc_roc_ci_low",
    "test/auc_roc_ci_high",
    "test/sensitivity",
    "test/specificity",
    "test/pr_auc",
)


def ui_base(tracking_uri: str | None = None) -> str:
    """The UI of a tracking server is the server; the embedded store's is ``make ui``'s."""
    uri = tracking_uri if tracking_uri is not None else os.environ.get("MLFLOW_TRACKING_URI", "")
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else LOCAL_UI


def run_url(run_id: str, experiment_id: str | None = None, tracking_uri: str | None = None) -> str:
    base = ui_base(tracking_uri)
    if not experiment_id:
        return f"{base}/#/runs/{run_id}?{WORKFLOW_PARAM}"
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{WORKFLOW_PARAM}"


def runs_table_url(experiment_id: str, tracking_uri: str | None = None) -> str:
    """The experiment's runs table with the headline test metrics as columns."""
    return (
        f"{ui_base(tracking_uri)}/#/experiments/{experiment_id}/runs"
        f"?viewStateShareKey={HEADLINE_VIEW}&{WORKFLOW_PARAM}"
    )


def compare_url(run_ids: Sequence[str], experiment_id: str, tracking_uri: str | None = None) -> str:
    """MLflow's Compare page of these runs (parameters side by side, metric charts)."""
    runs = urllib.parse.quote(json.dumps(list(run_ids), separators=(",", ":")), safe="")
    exps = urllib.parse.quote(json.dumps([experiment_id], separators=(",", ":")), safe="")
    return f"{ui_base(tracking_uri)}/#/compare-runs?runs={runs}&experiments={exps}&{WORKFLOW_PARAM}"


def model_version_path(name: str, version: str) -> str:
    """A model version's page, relative (for Markdown inside the MLflow UI, e.g. a run's description)."""
    return f"#/models/{urllib.parse.quote(name, safe='')}/versions/{version}?{WORKFLOW_PARAM}"


def model_version_url(name: str, version: str, tracking_uri: str | None = None) -> str:
    return f"{ui_base(tracking_uri)}/{model_version_path(name, version)}"


def headline_view_tags() -> dict[str, str]:
    """The experiment tag behind :func:`runs_table_url`: the runs table's columns and order."""
    state = {
        "selectedColumns": [f"metrics.`{key}`" for key in HEADLINE_COLUMNS],
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
    }
    return {SHARED_VIEW_TAG_PREFIX + HEADLINE_VIEW: json.dumps(state, separators=(",", ":"))}
