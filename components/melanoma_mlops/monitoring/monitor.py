"""``melanoma-mlops monitor``: one version's logged predictions of a window against its reference.

Reads the prediction log (:mod:`melanoma_mlops.serving.log_sink`), keeps the records of the
version the model URI names, compares them with the version's reference profile
(:mod:`melanoma_mlops.registry.reference`) by :func:`~melanoma_mlops.monitoring.drift.assess`, and
records the result: an MLflow run in the ``melanoma-monitoring`` experiment (the window, the
metrics, ``drift_report.html`` and ``drift_report.json``) and the version's tags
``monitor_status`` (ok / warn / drift), ``monitor_run_id`` and ``monitor_checked_at``.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from melanoma_mlops import tracking, tracking_client
from melanoma_mlops.errors import ConfigError, DataError
from melanoma_mlops.monitoring.drift import DriftReport, assess
from melanoma_mlops.registry.lookup import version_of_uri
from melanoma_mlops.registry.reference import load_profile
from melanoma_mlops.serving.log_sink import read_counts, read_records

logger = logging.getLogger(__name__)

EXPERIMENT = "melanoma-monitoring"
STATUS_TAG = "monitor_status"
_SPAN = re.compile(r"^(\d+)\s*([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


@dataclass(frozen=True)
class MonitorResult:
    model_name: str
    version: str
    since: datetime
    until: datetime
    report: DriftReport
    run_id: str


def parse_span(text: str, option: str = "--window") -> timedelta:
    """``7d``, ``24h`` or ``90m`` as a duration."""
    if match := _SPAN.match(text.strip()):
        return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    raise ConfigError(f"{option} {text!r}: use a span such as 7d, 24h or 90m")


def parse_since(text: str, now: datetime) -> datetime:
    """``7d``, ``24h``, ``90m`` before ``now``, or an ISO 8601 date/time (UTC unless it says)."""
    text = text.strip()
    if match := _SPAN.match(text):
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--since {text!r}: use a span such as 7d, 24h or 90m, or an ISO date") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def registered_version(model_uri: str) -> tuple[str, str]:
    if not model_uri.startswith("models:/"):
        raise ConfigError(f"--model-uri {model_uri!r}: use models:/NAME@ALIAS or models:/NAME/VERSION")
    try:
        mv = version_of_uri(MlflowClient(), model_uri)
    except (MlflowException, ValueError) as exc:
        raise ConfigError(
            f"{model_uri}: no such registered version in {tracking_client.tracking_uri()} ({exc})"
        ) from exc
    return mv.name, str(mv.version)


def html_report(result: MonitorResult) -> str:
    """The run's ``drift_report.html``: the verdict, its reasons and every column's test."""
    r = result.report
    reasons = "".join(f"<li>{reason}</li>" for reason in r.reasons) or "<li>no drift found</li>"
    return (
        "<html><head><meta charset='utf-8'>"
        f"<title>Drift: {result.model_name} v{result.version}</title></head>"
        f"<body><h1>{result.model_name} version {result.version}: {r.status}</h1>"
        f"<p>{r.n_current} logged predictions from {result.since:%Y-%m-%d %H:%M} "
        f"to {result.until:%Y-%m-%d %H:%M} UTC "
        f"against {r.n_reference} reference images; flagged malignant: {r.flagged_rate_current:.1%} "
        f"(reference {r.flagged_rate_reference:.1%})</p><ul>{reasons}</ul><p>{r.embedding_line()}</p>"
        f"{r.to_frame().to_html(index=False, float_format=lambda v: f'{v:.4g}')}</body></html>"
    )


def monitor(model_uri: str, since: str, log_location: str, now: datetime | None = None) -> MonitorResult:
    """Assess the window and record the run and the version's status (see the module docstring)."""
    until = now or datetime.now(UTC)
    start = parse_since(since, until)
    name, version = registered_version(model_uri)
    reference = load_profile(name, version)
    records = read_records(log_location, start, until)
    if len(records):
        records = records[(records["model_name"] == name) & (records["model_version"].astype(str) == version)]
    if not len(records):
        raise DataError(
            f"no predictions of {name} version {version} logged in {log_location} "
            f"since {start:%Y-%m-%d %H:%M} UTC: "
            "check --log (where the servers write: MELANOMA_PREDICTION_LOG) and --since"
        )
    counts = read_counts(log_location)
    incomplete = sum(int(c.get("dropped", 0)) + int(c.get("failed", 0)) for c in counts)
    unembedded = sum(int(c.get("unembedded", 0)) for c in counts)
    report = assess(reference, records, incomplete)
    experiment_id = tracking.configure(EXPERIMENT)  # configure creates it; the run must be put in it
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"monitor {name} v{version}") as run:
        mlflow.set_tags({"model.name": name, "model.version": version, STATUS_TAG: report.status})
        mlflow.log_params(
            {
                "model_uri": model_uri,
                "since": start.isoformat(),
                "until": until.isoformat(),
                "log": log_location,
            }
        )
        mlflow.log_metrics(
            {
                "n_current": report.n_current,
                "n_reference": report.n_reference,
                "drifted_input_share": report.drifted_share,
                "flagged_rate_current": report.flagged_rate_current,
                "flagged_rate_reference": report.flagged_rate_reference,
                "log_incomplete_records": incomplete,
                "log_unembedded_records": unembedded,
                "embedding_axes_tested": len(report.embedding_columns),
                "drifted_embedding_share": report.drifted_embedding_share,
                **{f"drift_score.{c.column}": c.score for c in report.columns},
            }
        )
        result = MonitorResult(name, version, start, until, report, run.info.run_id)
        mlflow.log_text(html_report(result), "drift_report.html")
        mlflow.log_text(
            json.dumps(
                {
                    "status": report.status,
                    "reasons": report.reasons,
                    "embedding": report.embedding_line(),
                    "columns": report.to_frame().to_dict("records"),
                },
                indent=2,
            ),
            "drift_report.json",
        )
    client = MlflowClient()
    for key, value in {
        STATUS_TAG: report.status,
        "monitor_run_id": result.run_id,
        "monitor_checked_at": until.isoformat(),
    }.items():
        client.set_model_version_tag(name, version, key, value)
    return result


def summary(result: MonitorResult) -> str:
    r = result.report
    lines = [
        f"{result.model_name} version {result.version}: {r.status.upper()} "
        f"({r.n_current} predictions since {result.since:%Y-%m-%d %H:%M} UTC, "
        f"{r.n_reference} reference images)",
        *[f"  - {reason}" for reason in r.reasons],
        *([f"  {r.embedding_line()}"] if r.embedding_line() not in r.reasons else []),
        f"  flagged malignant: {r.flagged_rate_current:.1%} (reference {r.flagged_rate_reference:.1%})",
        f"  MLflow run {result.run_id} (experiment {EXPERIMENT}); version tag {STATUS_TAG}={r.status}",
    ]
    return "\n".join(lines)


__all__ = [
    "EXPERIMENT",
    "STATUS_TAG",
    "MonitorResult",
    "monitor",
    "parse_since",
    "parse_span",
    "registered_version",
    "summary",
]
