"""What every component body calls: logging set up once, every failure turned into one clear line.

A component runs as its own process (a subprocess locally, a pod on a cluster), so this is that
process's entry point, the one place besides the CLI that configures logging.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from melanoma_mlops import tracking, tracking_client
from melanoma_mlops.artifacts import TASK_CLASSES
from melanoma_mlops.errors import MelanomaError

T = TypeVar("T")
ERROR_FILE_ENV = "MELANOMA_ERROR_FILE"
#: The longest one-line summary of an unexpected exception (the step log has the traceback).
SUMMARY_CHARS = 400


def configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("MELANOMA_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def summarize(exc: BaseException) -> str:
    """One line for any exception: the tracking-server message, or ``Type: first line``.

    ``OSError`` keeps its errno text and file name (``[Errno 28] No space left on device: 'x'``).
    """
    unreachable = tracking_client.unreachable_message(exc)
    if unreachable:
        return unreachable
    if isinstance(exc, MelanomaError):
        return str(exc)
    text = " ".join(str(exc).split()) or "(no message)"
    if len(text) > SUMMARY_CHARS:
        text = text[: SUMMARY_CHARS - 3] + "..."
    return f"{type(exc).__name__}: {text}"


def _raise_on_sigterm(signum: int, frame: Any) -> None:
    raise tracking.TerminatedError(f"signal {signum}")


def run_step(step: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a step function; any failure ends the process with one line naming the step.

    A :class:`MelanomaError` is the user's message (no traceback); anything else (a full disk, a
    connection error, a bug) is logged with its traceback in the step log and summarised in one
    line. When ``MELANOMA_ERROR_FILE`` is set (the local runner sets it) the line is also written
    there, so the CLI can repeat it as the run's outcome. SIGTERM unwinds like Ctrl-C, so the
    step's MLflow runs are marked KILLED rather than left RUNNING.
    """
    configure_logging()
    tracking_client.apply_client_defaults()
    log = logging.getLogger(f"melanoma.{step}")
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        return fn(*args, **kwargs)
    except MelanomaError as exc:
        log.error("%s failed: %s", step, exc)
        message, code = str(exc), exc.exit_code
    except Exception as exc:
        log.error("%s failed", step, exc_info=True)
        message, code = summarize(exc), 1
    _report(step, message)
    raise SystemExit(code) from None


def _report(step: str, message: str) -> None:
    path = os.environ.get(ERROR_FILE_ENV)
    if path:
        with open(path, "a", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write(f"{step}: {message}\n")


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
    classification.log_confusion_matrix(
        list(result.get("class_names") or TASK_CLASSES["malignant"]), result["confusion"]
    )


def write_external_metrics(result: dict[str, Any], metrics: Any) -> None:
    """External validation's whole-set figures (with CIs), ECE and overlap count as KFP ``Metrics``
    (the slices stay in MLflow: a KFP metrics table of every slice would bury the headline)."""
    from melanoma_mlops.evaluation.external import flat_metrics

    for name, value in flat_metrics(result).items():
        if not name.startswith("slice/"):
            metrics.log_metric(name.replace("/", "_"), value)
    metrics.log_metric("overlaps_excluded", float(result["overlaps"]))


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
