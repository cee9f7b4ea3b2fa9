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


def _metric_rows(
    tags: dict[str, str], intervals: dict[str, tuple[float, float]]
) -> list[tuple[str, str, str]]:
    """(label, value, CI) of the test metrics recorded on the version, in display order.

    The CI is ``"low - high"`` or ``""`` when the version's run recorded none.
    """
    rows = []
    for tag, label in METRIC_TAGS:
        if tag not in tags:
            continue
        try:
            value = f"{float(tags[tag]):.3f}"
        except ValueError:
            value = tags[tag]
        low_high = intervals.get(tag)
        rows.append((label, value, f"{low_high[0]:.3f} - {low_high[1]:.3f}" if low_high else ""))
    return rows


@dataclass
class RegistryEntry:
    """What the registry says about the model, read without TensorFlow (a second or two)."""

    model_uri: str
    #: ``models:/<name>/<version>`` for a registry URI (the alias may move; the app does not).
    pinned_uri: str
    version: str
    tags: dict[str, str]
    #: (low, high) of each metric tag that has a confidence interval (see METRIC_TAGS).
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: The pipeline run's metrics (``test/ece`` ...), when the version names its run.
    run_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def threshold(self) -> float | None:
        try:
            return float(self.tags["threshold"])
        except (KeyError, ValueError):
            return None

    def metrics(self) -> list[tuple[str, str, str]]:
        return _metric_rows(self.tags, self.intervals)


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
    run_metrics: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> list[tuple[str, str, str]]:
        """(label, value, CI) of the test metrics recorded on the version, in display order."""
        return _metric_rows(self.tags, self.intervals)


def _as_interval(low: object, high: object) -> tuple[float, float] | None:
    try:
        interval = (float(low), float(high))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return interval if all(map(math.isfinite, interval)) else None


def read_run_metrics(client: Any, tags: dict[str, str]) -> dict[str, float]:
    """The pipeline run's metrics (the evaluate step's ``test/*``); empty when it cannot be read."""
    from mlflow.exceptions import MlflowException

    if not tags.get("pipeline_run_id"):
        return {}
    try:
        return dict(client.get_run(tags["pipeline_run_id"]).data.metrics)
    except MlflowException as exc:
        logger.warning("no run metrics: pipeline run not readable (%s)", exc)
        return {}


def read_intervals(
    client: Any, tags: dict[str, str], run_metrics: dict[str, float] | None = None
) -> dict[str, tuple[float, float]]:
    """Confidence intervals of the METRIC_TAGS: version tags ``<tag>_ci_low|high`` if the register
    step wrote them, else the pipeline run's metrics ``test/<metric>_ci_low|high`` (the evaluate
    step logs them there). Missing anywhere: no interval; never an error.
    """
    out: dict[str, tuple[float, float]] = {}
    for tag, _ in METRIC_TAGS:
        interval = _as_interval(tags.get(f"{tag}_ci_low"), tags.get(f"{tag}_ci_high"))
        if interval is None and tags.get("pipeline_run_id"):
            if run_metrics is None:
                run_metrics = read_run_metrics(client, tags)
            metric = tag.removeprefix("test_")
            interval = _as_interval(
                run_metrics.get(f"test/{metric}_ci_low"), run_metrics.get(f"test/{metric}_ci_high")
            )
        if interval is not None:
            out[tag] = interval
    return out


def read_registry(model_uri: str, tracking_uri: str) -> RegistryEntry:
    """The registry's facts about ``model_uri`` (no TensorFlow); a clear ConfigError if it has none."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from melanoma_mlops.registry.lookup import version_of_uri

    mlflow.set_tracking_uri(tracking_uri)
    if not model_uri.startswith("models:/"):
        return RegistryEntry(model_uri=model_uri, pinned_uri=model_uri, version="", tags={})
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        mv = version_of_uri(client, model_uri)
    except (MlflowException, ValueError) as exc:
        raise ConfigError(
            f"no model {model_uri} in the registry at {tracking_uri}. Train and promote one first "
            "(melanoma-mlops run, then melanoma-mlops promote), or set MELANOMA_MODEL_URI."
        ) from exc
    tags = dict(mv.tags)
    run_metrics = read_run_metrics(client, tags)
    return RegistryEntry(
        model_uri=model_uri,
        # Pin the version: the alias may move while the app runs, the loaded weights do not.
        pinned_uri=f"models:/{mv.name}/{mv.version}",
        version=str(mv.version),
        tags=tags,
        intervals=read_intervals(client, tags, run_metrics),
        run_metrics=run_metrics,
    )


def import_tensorflow() -> None:
    """Import TensorFlow and Keras with their start-up banners kept off the console."""
    from melanoma_mlops import quiet_tensorflow

    quiet_tensorflow.silence()
    import keras  # noqa: F401 - imported for its (long) start-up, before the weights are read
    import tensorflow  # noqa: F401


def load_entry(entry: RegistryEntry) -> Champion:
    """Load the pyfunc that ``entry`` names; a clear ConfigError if impossible."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from melanoma_mlops.serving.prediction_log import serve_as
    from melanoma_mlops.serving.pyfunc import unwrap

    import_tensorflow()
    serve_as("app")  # what the app scores goes to the prediction log (docs/monitoring.md)
    try:
        loaded = mlflow.pyfunc.load_model(entry.pinned_uri)
    except (MlflowException, OSError) as exc:
        where = mlflow.get_tracking_uri()
        raise ConfigError(f"{entry.model_uri} could not be loaded from {where}: {exc}") from exc
    inner = unwrap(loaded)
    logger.info("loaded %s (version %s)", entry.model_uri, entry.version or "-")
    return Champion(
        model_uri=entry.model_uri,
        version=entry.version,
        tags=entry.tags,
        threshold=inner.contract.threshold,
        image_size=inner.contract.image_size,
        pyfunc=loaded,
        keras_model=inner.model,
        intervals=entry.intervals,
        run_metrics=entry.run_metrics,
    )


def load_champion(model_uri: str, tracking_uri: str) -> Champion:
    """Load ``model_uri`` from the registry at ``tracking_uri``; a clear ConfigError if impossible."""
    return load_entry(read_registry(model_uri, tracking_uri))


def model_caption(model: Champion | RegistryEntry) -> str:
    """One line about the model: URI, version, threshold and when its gate passed."""
    parts = [model.model_uri]
    if model.version:
        parts.append(f"version {model.version}")
    if model.threshold is not None:
        parts.append(f"decision threshold {model.threshold:.2%}")
    if model.tags.get("gate.passed") == "true":
        parts.append("promotion gate passed")
    return " | ".join(parts)


def _tag_float(tags: dict[str, str], key: str) -> float | None:
    try:
        value = float(tags[key])
    except (KeyError, ValueError):
        return None
    return value if math.isfinite(value) else None


def operating_point_text(model: Champion | RegistryEntry) -> str | None:
    """What the frozen threshold means for benign lesions, from the version's test specificity.

    A "suspicious" banner is read as "probably malignant"; at a sensitivity-first operating point
    most benign lesions may get it too, and the reader must know how often.
    """
    specificity = _tag_float(model.tags, "test_specificity")
    if specificity is None:
        return None
    flagged = round((1.0 - specificity) * 10)
    share = "fewer than 1 in 10" if flagged == 0 else f"about {flagged} of 10"
    text = f"At this operating point {share} benign lesions are flagged too "
    text += f"(test specificity {specificity:.2f}"
    if interval := model.intervals.get("test_specificity"):
        text += f", {CI_LABEL} {interval[0]:.2f} - {interval[1]:.2f}"
    return text + "): a result above the threshold is a reason for review, not a finding of malignancy."


def calibration_text(model: Champion | RegistryEntry) -> str:
    """Whether the probability can be read as a risk: the pipeline does not calibrate it, say so."""
    ece = _tag_float(model.tags, "calibration_ece")
    if ece is None:
        ece = model.run_metrics.get("test/ece")
    brier = _tag_float(model.tags, "calibration_brier")
    figures = []
    if ece is not None:
        figures.append(f"ECE {ece:.3f}")
    if brier is not None:
        figures.append(f"Brier score {brier:.3f}")
    measured = f" (on the test set: {', '.join(figures)})" if figures else ""
    if model.tags.get("calibrated") == "true":
        return f"The probability was calibrated after training{measured}."
    return (
        "The probability is not calibrated: it is the network's output on a class-balanced training "
        f"set, not an estimate of how often such a lesion is malignant{measured}. Use it to rank "
        "lesions and compare with the threshold, not as a risk."
    )


def describe_model(model: Champion | RegistryEntry) -> dict[str, Any]:
    """What the sidebar shows, as plain data (also handy for logs and tests)."""
    return {
        "caption": model_caption(model),
        "metrics": model.metrics(),
        "data_fingerprint": model.tags.get("data_fingerprint", "")[:12],
        "synthetic": model.tags.get("data_synthetic") == "true",
        "operating_point": operating_point_text(model),
        "calibration": calibration_text(model),
    }
