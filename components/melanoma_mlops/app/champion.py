"""The champion as the detection app shows it: loaded from the registry, pinned to its version,
with its test metrics and their confidence intervals.

Loading pins the alias's version (``models:/<name>/<version>``) so the weights shown never change
under a running app; the metrics come from the version's tags and the intervals from the tags or,
failing that, from the pipeline run's evaluate metrics. Kept apart from the upload vetting and
scoring in :mod:`melanoma_mlops.app.logic` so each can be read on its own.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from melanoma_mlops.errors import ConfigError

if TYPE_CHECKING:
    import keras
    import mlflow.pyfunc

logger = logging.getLogger(__name__)

#: Label of the confidence intervals shown next to the test metrics (the evaluate step's
#: group bootstrap, alpha 0.05).
CI_LABEL = "95% CI"
#: Version tags shown as the model's test metrics, in this order, with their labels. Each metric's
#: interval is read from the version tags ``<tag>_ci_low`` / ``<tag>_ci_high`` when present, else
#: from the pipeline run's metrics ``test/<metric>_ci_low`` / ``_ci_high`` (the evaluate step's).
METRIC_TAGS = (
    ("test_auc_roc", "AUC (test)"),
    ("test_sensitivity", "Sensitivity (test)"),
    ("test_specificity", "Specificity (test)"),
    ("test_f1", "F1 (test)"),
    ("test_accuracy", "Accuracy (test)"),
)


@dataclass
class Champion:
    """The loaded model and what the page shows about it."""

    model_uri: str
    version: str
    tags: dict[str, str]
    threshold: float
    image_size: int
    pyfunc: mlflow.pyfunc.PyFuncModel = field(repr=False)
    keras_model: keras.Model = field(repr=False)
    #: (low, high) of each metric tag that has a confidence interval (see METRIC_TAGS).
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)

    def metrics(self) -> list[tuple[str, str, str]]:
        """(label, value, CI) of the test metrics recorded on the version, in display order.

        The CI is ``"low - high"`` or ``""`` when the version's run recorded none.
        """
        rows = []
        for tag, label in METRIC_TAGS:
            if tag not in self.tags:
                continue
            try:
                value = f"{float(self.tags[tag]):.3f}"
            except ValueError:
                value = self.tags[tag]
            low_high = self.intervals.get(tag)
            rows.append((label, value, f"{low_high[0]:.3f} - {low_high[1]:.3f}" if low_high else ""))
        return rows


def _as_interval(low: object, high: object) -> tuple[float, float] | None:
    try:
        interval = (float(low), float(high))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return interval if all(map(math.isfinite, interval)) else None


def read_intervals(client: Any, tags: dict[str, str]) -> dict[str, tuple[float, float]]:
    """Confidence intervals of the METRIC_TAGS: version tags ``<tag>_ci_low|high`` if the register
    step wrote them, else the pipeline run's metrics ``test/<metric>_ci_low|high`` (the evaluate
    step logs them there). Missing anywhere: no interval; never an error.
    """
    from mlflow.exceptions import MlflowException

    out: dict[str, tuple[float, float]] = {}
    run_metrics: dict[str, float] | None = None
    for tag, _ in METRIC_TAGS:
        interval = _as_interval(tags.get(f"{tag}_ci_low"), tags.get(f"{tag}_ci_high"))
        if interval is None and tags.get("pipeline_run_id"):
            if run_metrics is None:
                try:
                    run_metrics = dict(client.get_run(tags["pipeline_run_id"]).data.metrics)
                except MlflowException as exc:
                    logger.warning("no confidence intervals: pipeline run not readable (%s)", exc)
                    run_metrics = {}
            metric = tag.removeprefix("test_")
            interval = _as_interval(
                run_metrics.get(f"test/{metric}_ci_low"), run_metrics.get(f"test/{metric}_ci_high")
            )
        if interval is not None:
            out[tag] = interval
    return out


def load_champion(model_uri: str, tracking_uri: str) -> Champion:
    """Load ``model_uri`` from the registry at ``tracking_uri``; a clear ConfigError if impossible."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from melanoma_mlops.registry.lookup import version_of_uri

    mlflow.set_tracking_uri(tracking_uri)
    tags: dict[str, str] = {}
    intervals: dict[str, tuple[float, float]] = {}
    version = ""
    if model_uri.startswith("models:/"):
        client = MlflowClient(tracking_uri=tracking_uri)
        try:
            mv = version_of_uri(client, model_uri)
        except (MlflowException, ValueError) as exc:
            raise ConfigError(
                f"no model {model_uri} in the registry at {tracking_uri}. Train and promote one first "
                "(melanoma-mlops run, then melanoma-mlops promote), or set MELANOMA_MODEL_URI."
            ) from exc
        version, tags = str(mv.version), dict(mv.tags)
        intervals = read_intervals(client, tags)
        # Pin the version: the alias may move while the app runs, the loaded weights do not.
        model_uri_pinned = f"models:/{mv.name}/{version}"
    else:
        model_uri_pinned = model_uri
    try:
        loaded = mlflow.pyfunc.load_model(model_uri_pinned)
    except (MlflowException, OSError) as exc:
        raise ConfigError(f"{model_uri} could not be loaded from {tracking_uri}: {exc}") from exc
    from melanoma_mlops.serving.pyfunc import unwrap

    inner = unwrap(loaded)
    logger.info("loaded %s (version %s)", model_uri, version or "-")
    return Champion(
        model_uri=model_uri,
        version=version,
        tags=tags,
        threshold=inner.contract.threshold,
        image_size=inner.contract.image_size,
        pyfunc=loaded,
        keras_model=inner.model,
        intervals=intervals,
    )


def model_caption(champion: Champion) -> str:
    """One line about the model: URI, version, threshold and when its gate passed."""
    parts = [champion.model_uri]
    if champion.version:
        parts.append(f"version {champion.version}")
    parts.append(f"decision threshold {champion.threshold:.2%}")
    if champion.tags.get("gate.passed") == "true":
        parts.append("promotion gate passed")
    return " | ".join(parts)


def describe_model(champion: Champion) -> dict[str, Any]:
    """What the sidebar shows, as plain data (also handy for logs and tests)."""
    return {
        "caption": model_caption(champion),
        "metrics": champion.metrics(),
        "data_fingerprint": champion.tags.get("data_fingerprint", "")[:12],
        "synthetic": champion.tags.get("data_synthetic") == "true",
    }
