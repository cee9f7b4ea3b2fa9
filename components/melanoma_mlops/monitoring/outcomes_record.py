"""``melanoma-mlops outcomes``: biopsy results against what a version answered, recorded on it.

Reads the outcomes CSV (:func:`~melanoma_mlops.monitoring.outcomes.read_outcomes`) and the
version's logged predictions (the prediction log, read as ``monitor`` reads it), joins them,
computes the realised metrics per window and over the whole look-back, and records an MLflow run
in the monitoring experiment (metrics per window as steps, ``outcomes_windows.csv``,
``unmatched_outcomes.csv``, ``outcomes_report.json``) and the version's tags ``outcomes.status``
(ok / flagged / no interval), ``outcomes.flagged``, ``outcomes.run_id``, ``outcomes.checked_at``,
``outcomes.matched``, ``outcomes.unmatched`` and the lower bounds of the whole look-back.
Flagged: a lower bound under the promotion gate's floor (:class:`~melanoma_mlops.config.GateConfig`).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from melanoma_mlops import tracking
from melanoma_mlops.config import GateConfig
from melanoma_mlops.errors import DataError
from melanoma_mlops.monitoring.monitor import EXPERIMENT, parse_since, parse_span, registered_version
from melanoma_mlops.monitoring.outcomes import (
    FLOORS,
    GATED,
    WindowMetrics,
    describe_unmatched,
    gate_floors,
    join,
    read_outcomes,
    window_metrics,
    windows,
)
from melanoma_mlops.serving.log_sink import read_records

logger = logging.getLogger(__name__)

TAG_PREFIX = "outcomes."
UNMATCHED_ARTIFACT = "unmatched_outcomes.csv"


@dataclass(frozen=True)
class OutcomesResult:
    model_name: str
    version: str
    since: datetime
    until: datetime
    n_outcomes: int
    n_matched: int
    unmatched: pd.DataFrame
    windows: list[WindowMetrics]
    overall: WindowMetrics
    gate: GateConfig
    run_id: str
    #: Where the floors came from (:func:`~melanoma_mlops.monitoring.outcomes.gate_floors`).
    floors_from: str = "given by the caller"

    @property
    def flagged(self) -> bool:
        return any(w.below for w in (*self.windows, self.overall))


def _defined(values: dict[str, float]) -> dict[str, float]:
    """A metric undefined in a window (no malignant outcome: no sensitivity) is not logged."""
    return {k: v for k, v in values.items() if not math.isnan(v)}


def _table(result_windows: list[WindowMetrics], overall: WindowMetrics) -> pd.DataFrame:
    rows = []
    for label, w in [*((f"{w.start:%Y-%m-%d %H:%M}", w) for w in result_windows), ("all", overall)]:
        row = {"window": label, "start": w.start.isoformat(), "end": w.end.isoformat(), "n": w.n,
               "malignant": w.positives, "status": w.status, "below_floor": " ".join(w.below)}  # fmt: skip
        for m in FLOORS:
            row[m] = w.point[m]
            row[f"{m}_low"], row[f"{m}_high"] = w.ci[m] if w.ci else (float("nan"), float("nan"))
        rows.append(row)
    return pd.DataFrame(rows)


def outcomes(
    csv: str, model_uri: str, log_location: str, since: str = "90d", window: str = "7d",
    gate: GateConfig | None = None, now: datetime | None = None, n_boot: int = 1000,
) -> OutcomesResult:  # fmt: skip
    """Join, measure and record (see the module docstring). Nothing is recorded when no outcome
    matches a prediction of the version (a DataError naming the first ids)."""
    until = now or datetime.now(UTC)
    start, width = parse_since(since, until), parse_span(window)
    table = read_outcomes(csv)
    name, version = registered_version(model_uri)
    floors_from = "given by the caller"
    if gate is None:
        gate, floors_from = gate_floors(MlflowClient().get_model_version(name, version).tags)
    records = read_records(log_location, start, until)
    if len(records):
        records = records[(records["model_name"] == name) & (records["model_version"].astype(str) == version)]
    matched, unmatched = join(table, records)
    if matched.empty:
        raise DataError(
            f"{csv}: none of its {len(table)} outcomes matches a prediction of {name} version {version} "
            f"logged in {log_location} since {start:%Y-%m-%d %H:%M} UTC ({describe_unmatched(unmatched)}): "
            "check --model-uri, --log and --since"
        )
    per_window = windows(matched, start, until, width, gate, n_boot)
    overall = window_metrics(matched, start, until, gate, n_boot)
    frame = _table(per_window, overall)
    experiment_id = tracking.configure(EXPERIMENT)  # configure creates it; the run must be put in it
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"outcomes {name} v{version}") as run:
        result = OutcomesResult(name, version, start, until, len(table), len(matched), unmatched,
                                per_window, overall, gate, run.info.run_id, floors_from)  # fmt: skip
        status = "flagged" if result.flagged else overall.status
        mlflow.set_tags({"model.name": name, "model.version": version, f"{TAG_PREFIX}status": status})
        mlflow.log_params({"model_uri": model_uri, "since": start.isoformat(), "until": until.isoformat(),
                           "window": window, "log": log_location, "outcomes_file": csv,
                           "floors_from": floors_from,
                           **{floor: getattr(gate, floor) for floor in FLOORS.values()}})  # fmt: skip
        mlflow.log_metrics(
            {"n_outcomes": len(table), "n_matched": len(matched), "n_unmatched": len(unmatched)}
        )
        for step, w in enumerate(per_window):
            values = {f"window.{m}": w.point[m] for m in FLOORS}
            if w.ci:
                values.update({f"window.{m}_low": w.ci[m][0] for m in FLOORS})
            values = {**_defined(values), "window.n": w.n}
            mlflow.log_metrics(values, step=step, timestamp=int(w.end.timestamp() * 1000))
        overall_values = {m: overall.point[m] for m in FLOORS}
        if overall.ci:
            for m in FLOORS:
                overall_values[f"{m}_low"], overall_values[f"{m}_high"] = overall.ci[m]
        mlflow.log_metrics(_defined(overall_values))
        mlflow.log_text(frame.to_csv(index=False), "outcomes_windows.csv")
        mlflow.log_text(unmatched.to_csv(index=False), UNMATCHED_ARTIFACT)
        report = {"status": status, "floors": {m: getattr(gate, f) for m, f in FLOORS.items()},
                  "windows": frame.to_dict("records"), "unmatched": len(unmatched)}  # fmt: skip
        mlflow.log_text(json.dumps(report, indent=2, default=str), "outcomes_report.json")
    tags = {
        "status": status,
        "flagged": str(result.flagged).lower(),
        "run_id": result.run_id,
        "checked_at": until.isoformat(),
        "matched": str(len(matched)),
        "unmatched": str(len(unmatched)),
    }
    if overall.ci:
        tags.update({f"{m}_low": f"{overall.ci[m][0]:.4f}" for m in FLOORS})
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, TAG_PREFIX + key, value)
    return result


def _line(label: str, w: WindowMetrics) -> str:
    figures = []
    for m in FLOORS:
        low_high = f" [{w.ci[m][0]:.2f}, {w.ci[m][1]:.2f}]" if w.ci else ""
        figures.append(f"{m} {w.point[m]:.2f}{low_high}")
    return f"  {label}: {w.n} outcomes ({w.positives} malignant): {', '.join(figures)}: {w.status}"


def summary(result: OutcomesResult) -> str:
    g = result.gate
    head = "FLAGGED" if result.flagged else result.overall.status.upper()
    lines = [
        f"{result.model_name} version {result.version}: {head} ({result.n_matched} of {result.n_outcomes} "
        f"outcomes matched to predictions since {result.since:%Y-%m-%d %H:%M} UTC; 95% intervals; floors "
        f"sensitivity {g.min_sensitivity:.2f}, specificity {g.min_specificity:.2f}, AUC {g.min_auc:.2f})",
        *[_line(f"{w.start:%Y-%m-%d %H:%M} to {w.end:%Y-%m-%d %H:%M}", w) for w in result.windows],
        _line("all", result.overall),
    ]
    if result.floors_from != GATED:
        lines.append(f"  floors: {result.floors_from}")
    for label, w in [*((f"{w.start:%Y-%m-%d %H:%M}", w) for w in result.windows), ("all", result.overall)]:
        if w.below:
            lines.append(f"  - {label}: lower bound under the gate's floor: {', '.join(w.below)}")
    if len(result.unmatched):
        lines.append(
            f"  {len(result.unmatched)} outcome rows matched no prediction (listed in the run's "
            f"{UNMATCHED_ARTIFACT}): {describe_unmatched(result.unmatched)}"
        )
    lines.append(
        f"  MLflow run {result.run_id} (experiment {EXPERIMENT}); version tag "
        f"{TAG_PREFIX}status={'flagged' if result.flagged else result.overall.status}"
    )
    return "\n".join(lines)


__all__ = ["TAG_PREFIX", "UNMATCHED_ARTIFACT", "OutcomesResult", "outcomes", "summary"]
