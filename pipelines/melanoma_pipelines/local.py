"""Run the DAG on this machine with ``kfp.local`` (SubprocessRunner, no containers, no cluster)."""

from __future__ import annotations

import builtins
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfp import local
from mlflow.tracking import MlflowClient

from melanoma_mlops import EXPERIMENT_NAME, tracking
from melanoma_mlops.config import TrainConfig
from melanoma_mlops.errors import MelanomaError

from .dag import build_pipeline, default_run_name, pipeline_arguments
from .runtime import ERROR_FILE_ENV

logger = logging.getLogger(__name__)


class PipelineError(MelanomaError):
    """A step of the local pipeline run failed; the message is that step's own."""


@dataclass
class LocalRunResult:
    parent_run_id: str
    model_version: str
    metrics: dict[str, float]
    seconds: float
    promotion: list[str]


def execute(
    pipeline: Any,
    arguments: dict[str, Any],
    *,
    pipeline_root: str | Path,
    on_failure: Callable[[], None] | None = None,
) -> Any:
    """Run a pipeline under ``kfp.local`` (steps as subprocesses of this Python); return its task.

    A failed step's own one-line message (written by :func:`runtime.run_step`) becomes the
    :class:`PipelineError`, so the user sees what went wrong rather than kfp's generic failure.
    """
    # The components name the project image, but locally the same package runs from this venv.
    warnings.filterwarnings("ignore", message="You may be attemping to run a task that uses custom")
    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root), raise_on_error=True
    )
    original_print = builtins.print
    with tempfile.NamedTemporaryFile("r", suffix=".err", delete=False) as err:
        os.environ[ERROR_FILE_ENV] = err.name
    try:
        return pipeline(**arguments)
    except RuntimeError as exc:
        message = Path(err.name).read_text(encoding="utf-8").strip()
        if on_failure is not None:
            on_failure()
        raise PipelineError(message or f"the local pipeline failed: {exc}") from None
    finally:
        # kfp.local swaps builtins.print for an indenting one around each task; with parallel
        # tasks (ParallelFor) the swaps interleave and can leave it swapped for good.
        builtins.print = original_print
        os.environ.pop(ERROR_FILE_ENV, None)
        Path(err.name).unlink(missing_ok=True)


def run_local(
    config: TrainConfig,
    data: str,
    *,
    layout: str = "auto",
    task: str = "malignant",
    pipeline_root: str | Path = "local_outputs",
    run_name: str | None = None,
) -> LocalRunResult:
    """Run every step as a subprocess of this Python; return what MLflow recorded."""
    run_name = run_name or default_run_name()
    # Steps run in subprocesses: pin the tracking store they inherit to this process's choice.
    os.environ["MLFLOW_TRACKING_URI"] = tracking.tracking_uri()
    tracking.configure()
    start = time.perf_counter()
    task_ = execute(
        build_pipeline(),
        pipeline_arguments(config, data, layout=layout, task=task, run_name=run_name),
        pipeline_root=pipeline_root,
    )
    seconds = time.perf_counter() - start
    version = str(task_.output)
    parent = find_parent_run(run_name)
    metrics = MlflowClient().get_run(parent).data.metrics
    return LocalRunResult(parent, version, metrics, seconds, promotion_lines(config.model_name, version))


def promotion_lines(model_name: str, version: str) -> list[str]:
    """What the promote step decided, from the gate tags it left on the version."""
    client = MlflowClient()
    tags = client.get_model_version(model_name, version).tags
    aliases = client.get_model_version(model_name, version).aliases
    action = tags.get("gate.action", "not gated")
    lines = [f"promotion gate: {action} (aliases: {', '.join('@' + a for a in aliases) or 'none'})"]
    if tags.get("gate.reason"):
        lines.append(f"reason: {tags['gate.reason']}")
    return lines


def find_parent_run(run_name: str) -> str:
    client = MlflowClient()
    exp = client.get_experiment_by_name(EXPERIMENT_NAME)
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"attributes.run_name = '{run_name}' and tags.pipeline = 'two-stage'",
        max_results=1,
    )
    if not runs:
        raise PipelineError(f"no MLflow parent run named {run_name!r} in {tracking.tracking_uri()}")
    return runs[0].info.run_id


def summary_lines(result: LocalRunResult) -> list[str]:
    """The figures printed at the end of ``melanoma-mlops run``."""
    m: dict[str, Any] = result.metrics
    lines = [f"test metrics at threshold {m.get('threshold', float('nan')):.4f} (chosen on validation):"]
    for key in (
        "auc_roc",
        "pr_auc",
        "pauc_80",
        "accuracy",
        "balanced_accuracy",
        "sensitivity",
        "specificity",
        "precision",
        "f1",
    ):
        if f"test/{key}" in m:
            ci = ""
            if f"test/{key}_ci_low" in m:
                ci = f"  95% CI [{m[f'test/{key}_ci_low']:.4f}, {m[f'test/{key}_ci_high']:.4f}]"
            lines.append(f"  {key:<18} {m[f'test/{key}']:.4f}{ci}")
    lines.append(f"MLflow run id: {result.parent_run_id}  (tracking URI {tracking.tracking_uri()})")
    lines.append(f"registered model version: {result.model_version}")
    lines.extend(f"  {line}" for line in result.promotion)
    lines.append(f"pipeline wall time: {result.seconds:.0f} s")
    return lines
