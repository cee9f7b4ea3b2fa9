"""What every component body calls: logging set up once, user errors turned into one clear line.

A component runs as its own process (a subprocess locally, a pod on a cluster), so this is that
process's entry point, the one place besides the CLI that configures logging.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from melanoma_mlops.errors import MelanomaError

T = TypeVar("T")
ERROR_FILE_ENV = "MELANOMA_ERROR_FILE"


def configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("MELANOMA_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def run_step(step: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a step function; a :class:`MelanomaError` ends the process with its message, no traceback.

    When ``MELANOMA_ERROR_FILE`` is set (the local runner sets it) the message is also written
    there, so the CLI can repeat it as the run's one-line outcome.
    """
    configure_logging()
    try:
        return fn(*args, **kwargs)
    except MelanomaError as exc:
        logging.getLogger(f"melanoma.{step}").error("%s failed: %s", step, exc)
        path = os.environ.get(ERROR_FILE_ENV)
        if path:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(f"{step}: {exc}\n")
        raise SystemExit(exc.exit_code) from None


# --------------------------------------------------------------------------------------------
# KFP-only outputs: what the Kubeflow UI shows next to each step (MLflow has the rest)
# --------------------------------------------------------------------------------------------


def write_text(path: str, text: str) -> None:
    """Write a small output file (an OutputPath parameter or a Markdown artifact)."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def write_evaluation_metrics(result: dict[str, Any], metrics: Any, classification: Any) -> None:
    """The evaluate step's figures as KFP ``Metrics`` and ``ClassificationMetrics``."""
    from melanoma_mlops.evaluation.evaluate import flat_metrics

    for name, value in flat_metrics(result).items():
        metrics.log_metric(name.replace("/", "_"), value)
    roc = result["roc"]
    classification.log_roc_curve(roc["fpr"], roc["tpr"], roc["thresholds"])
    classification.log_confusion_matrix(["benign", "malignant"], result["confusion"])


def write_gradcam_metrics(summary: dict[str, Any], metrics: Any) -> None:
    for key in ("energy_in_mask", "pointing_game"):
        if key in summary:
            metrics.log_metric(f"gradcam_{key}", summary[key])


def write_gate_outputs(decision: dict[str, Any], report: Any, metrics: Any) -> bool:
    """The gate's Markdown report and figures; returns whether the candidate was promoted."""
    from melanoma_mlops.registry.report import gate_markdown

    write_text(report.path, gate_markdown(decision))
    metrics.log_metric("gate_passed", float(decision["passed"]))
    metrics.log_metric("gate_candidate_auc", decision["candidate"]["auc"])
    champion = decision["champion"] or {}
    if champion.get("auc") is not None:
        metrics.log_metric("gate_champion_auc_same_test", champion["auc"])
        metrics.log_metric("gate_auc_delta", champion["auc_delta"])
    return bool(decision["promoted"])
