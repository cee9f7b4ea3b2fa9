"""The registry side of an external validation: which version a URI names, the images its pipeline
run validated (the reference of the overlap audit), and the summary left on the version.

Lineage: a version's ``pipeline_run_id`` tag names its pipeline's parent run; that run's validate
step logged the validated manifest (every image later split into train/val/test, with sha256 and
the perceptual hash) as ``data/manifest``. Each result is recorded on the version as tags
``external.<name>.<key>`` and as a section appended to its model card (the version's description).
"""

from __future__ import annotations

import datetime
import logging
import re
import tempfile
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from melanoma_mlops import tracking, tracking_client
from melanoma_mlops.data import manifest
from melanoma_mlops.errors import ConfigError, DataError
from melanoma_mlops.registry.lookup import version_of_uri

logger = logging.getLogger(__name__)

#: The data set's name in tags and metric names: letters, digits, ``-`` and ``_``.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
CARD_HEADING = "## External validation"
CARD_INTRO = (
    "Each row: `melanoma-mlops evaluate` on another data set, at the threshold frozen on this model's own "
    "validation split; images that copy this model's own were left out (docs/evaluation.md)."
)
CARD_COLUMNS = (
    "data set",
    "n",
    "AUC [95% CI]",
    "sensitivity",
    "specificity",
    "ECE",
    "overlaps left out",
    "run",
)
_EXCLUDED_ARTIFACTS = ("excluded.csv", "duplicate_pairs.csv", "labels.json")


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            f"--name {name!r}: use 1-64 letters, digits, '-' or '_' (it becomes the tag prefix "
            "external.NAME.)"
        )
    return name


def resolve(client: MlflowClient, model_uri: str) -> ModelVersion:
    """The registered version ``models:/NAME@ALIAS`` or ``models:/NAME/N`` names, or a clear error."""
    if not re.fullmatch(r"models:/[^/@]+(@[^/@]+|/\d+)", model_uri):
        raise ConfigError(
            f"--model-uri {model_uri!r}: give a registered version, models:/NAME@ALIAS or models:/NAME/N "
            "(external validation is recorded on the version)"
        )
    try:
        return version_of_uri(client, model_uri)
    except MlflowException as exc:
        raise ConfigError(
            f"--model-uri {model_uri}: no such registered version in {tracking_client.tracking_uri()} "
            "(list them with: melanoma-mlops models)"
        ) from exc


def logged_model_id(mv: ModelVersion) -> str | None:
    """The version's MLflow 3 logged model (``m-...``): the external metrics are linked to it."""
    source = str(mv.source or "")
    return getattr(mv, "model_id", None) or (
        source.removeprefix("models:/") if source.startswith("models:/m-") else None
    )


def lineage_manifest(client: MlflowClient, mv: ModelVersion) -> pd.DataFrame:
    """The validated manifest of the version's pipeline run: every image it was trained, tuned and
    tested on. Refused (not guessed) when the version has no such record."""
    run_id = mv.tags.get("pipeline_run_id", "")
    where = f"{mv.name} version {mv.version}"
    try:
        parent = client.get_run(run_id) if run_id else None
        runs = (
            client.search_runs(
                [parent.info.experiment_id],
                filter_string=f"tags.mlflow.parentRunId = {tracking.quote(run_id)} and tags.step = 'validate'",  # noqa: E501
                max_results=1,
            )
            if parent
            else []
        )
        files = [f.path for f in client.list_artifacts(runs[0].info.run_id, "data")] if runs else []
        files = [f for f in files if f.rsplit("/", 1)[-1] not in _EXCLUDED_ARTIFACTS]
        if not files:
            raise DataError(
                f"{where} has no validated manifest on record (pipeline run {run_id or 'not tagged'}): the "
                "overlap audit cannot run; evaluate a version the pipeline registered"
            )
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(
                run_id=runs[0].info.run_id, artifact_path=files[0], dst_path=tmp
            )
            return manifest.read(local)
    except MlflowException as exc:
        raise DataError(f"the lineage of {where} (pipeline run {run_id}) cannot be read: {exc}") from exc


def record(
    client: MlflowClient, mv: ModelVersion, name: str, result: dict[str, Any], summary: dict[str, Any]
) -> dict[str, str]:
    """Tag the version ``external.<name>.*`` (AUC with its CI, n, overlaps, date, run) and append the
    section to its model card; returns the tags."""
    auc, (low, high) = result["external"]["auc_roc"], result["ci"]["auc_roc"]
    prefix = f"external.{name}"
    tags = {
        f"{prefix}.auc_roc": f"{auc:.4f} [{low:.4f}, {high:.4f}]",
        f"{prefix}.sensitivity": f"{result['external']['sensitivity']:.4f}",
        f"{prefix}.specificity": f"{result['external']['specificity']:.4f}",
        f"{prefix}.ece": f"{result['calibration']['ece']:.4f}",
        f"{prefix}.n": str(result["n"]),
        f"{prefix}.overlaps_excluded": str(summary["overlaps"]),
        f"{prefix}.date": datetime.date.today().isoformat(),
        f"{prefix}.run_id": summary["run_id"],
    }
    for key, value in tags.items():
        client.set_model_version_tag(mv.name, mv.version, key, value)
    card = mv.description or ""
    if CARD_HEADING not in card:
        header = f"| {' | '.join(CARD_COLUMNS)} |\n|{'---|' * len(CARD_COLUMNS)}\n"
        card += f"\n\n{CARD_HEADING}\n\n{CARD_INTRO}\n\n{header}"
    cells = [f"{name} ({summary['source']})", str(result["n"]),
             *(tags[f"{prefix}.{k}"] for k in ("auc_roc", "sensitivity", "specificity", "ece")),
             str(summary["overlaps"]), summary["run_id"]]  # fmt: skip
    card += f"| {' | '.join(cells)} |\n"
    client.update_model_version(mv.name, mv.version, description=card)
    return tags
