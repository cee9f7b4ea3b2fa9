"""Run either DAG on this machine with ``kfp.local``: steps as subprocesses of this Python
(``SubprocessRunner``, the default) or each in its container (``DockerRunner``, see
:mod:`melanoma_pipelines.containers`).

One runner for the main DAG and the ablation, with one environment policy: the tracking store
(and, for the ablation, its experiment) is pinned in the environment the steps inherit for the
duration of the run, then restored.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfp import local

from melanoma_mlops import tracking
from melanoma_mlops.config import RunConfig
from melanoma_mlops.errors import MelanomaError
from melanoma_mlops.experiments.ablation.design import experiment_env
from melanoma_mlops.steps.ablation import ablation_experiment_id

from . import DEFAULT_IMAGE, containers, results
from .ablation_dag import ablation_arguments, build_ablation_pipeline
from .dag import build_pipeline, default_run_name, pipeline_arguments
from .runtime import ERROR_FILE_ENV

logger = logging.getLogger(__name__)


class PipelineError(MelanomaError):
    """A step of the local pipeline run failed; the message is that step's own."""


@contextlib.contextmanager
def step_environment(extra: Mapping[str, str] | None = None) -> Iterator[None]:
    """Pin what the step subprocesses inherit (tracking store + ``extra``); restore it afterwards."""
    pinned = {"MLFLOW_TRACKING_URI": tracking.tracking_uri(), **(extra or {})}
    saved = {k: os.environ.get(k) for k in pinned}
    os.environ.update(pinned)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def execute(
    pipeline: Any,
    arguments: dict[str, Any],
    *,
    pipeline_root: str | Path,
    runner: Any = None,
    error_file: Path | None = None,
    on_failure: Callable[[], None] | None = None,
) -> Any:
    """Run a pipeline under ``kfp.local``; return its task.

    ``runner`` defaults to subprocesses of this Python. A failed step's own one-line message
    (written by :func:`runtime.run_step` to ``error_file``) becomes the :class:`PipelineError`, so
    the user sees what went wrong rather than kfp's generic failure.
    """
    # The components name the project image, but locally the same package runs from this venv.
    warnings.filterwarnings("ignore", message="You may be attemping to run a task that uses custom")
    local.init(
        runner=runner or local.SubprocessRunner(use_venv=False),
        pipeline_root=str(Path(pipeline_root).resolve()),
        raise_on_error=True,
    )
    original_print = builtins.print
    if error_file is None:
        with tempfile.NamedTemporaryFile("r", suffix=".err", delete=False) as err:
            error_file = Path(err.name)
    os.environ[ERROR_FILE_ENV] = str(error_file)
    try:
        return pipeline(**arguments)
    except RuntimeError as exc:
        message = error_file.read_text(encoding="utf-8").strip() if error_file.exists() else ""
        if on_failure is not None:
            on_failure()
        raise PipelineError(message or f"the local pipeline failed: {exc}") from None
    finally:
        # kfp.local swaps builtins.print for an indenting one around each task; with parallel
        # tasks (ParallelFor) the swaps interleave and can leave it swapped for good.
        builtins.print = original_print
        os.environ.pop(ERROR_FILE_ENV, None)
        error_file.unlink(missing_ok=True)


@dataclass
class DockerSettings:
    """``run --runner docker``: the step image and the MLflow server the containers report to."""

    image: str = containers.CPU_IMAGE
    mlflow_port: int = containers.DEFAULT_MLFLOW_PORT
    mlflow_store: Path = containers.MLFLOW_STORE
    artifacts_destination: str = ""

    def tracking_uri(self) -> str:
        """MLFLOW_TRACKING_URI when it names a server; else the MLflow server container's URL."""
        current = os.environ.get("MLFLOW_TRACKING_URI", "")
        if current.startswith(("http://", "https://")):
            return current
        return containers.ensure_mlflow_server(
            self.mlflow_store, self.mlflow_port, self.artifacts_destination
        )


def _in_containers(
    settings: DockerSettings, data: str, pipeline_root: Path
) -> tuple[Any, Path, dict[str, str]]:
    """(kfp runner, error file, environment to pin) for a run whose steps are containers."""
    root = containers.writable_by_containers(pipeline_root)
    error_file = root / f".step-errors-{os.getpid()}.txt"
    error_file.write_text("", encoding="utf-8")
    if os.getuid() == 0:
        os.chown(error_file, containers.IMAGE_UID, containers.IMAGE_GID)
    uri = settings.tracking_uri()
    plan = containers.plan(settings.image, uri, data, str(error_file))
    return plan, error_file, {"MLFLOW_TRACKING_URI": uri}


def run_local(
    config: RunConfig,
    data: str,
    *,
    pipeline_root: str | Path = "local_outputs",
    run_name: str | None = None,
    docker: DockerSettings | None = None,
) -> results.LocalRunResult:
    """Run the main DAG (each step a subprocess, or with ``docker`` a container); return what MLflow
    recorded."""
    run_name = run_name or default_run_name()
    start = time.perf_counter()
    if docker is None:
        pinned, runner, error_file, customize = {}, None, None, None
    else:
        plan, error_file, pinned = _in_containers(docker, data, Path(pipeline_root))
        runner, customize = plan.runner(), plan.customize
    with step_environment(pinned):
        tracking.configure()
        image = docker.image if docker is not None else DEFAULT_IMAGE
        task = execute(
            build_pipeline(image, customize=customize),
            pipeline_arguments(config, data, run_name=run_name),
            pipeline_root=pipeline_root,
            runner=runner,
            error_file=error_file,
        )
        return results.main_run(
            run_name, str(task.output), config.gate.model_name, time.perf_counter() - start
        )


def run_ablation_local(
    config: RunConfig,
    data: str,
    trials: list[str],
    *,
    pipeline_root: str | Path = "local_outputs",
    run_name: str | None = None,
    parallelism: int = 1,
    report_dir: str | Path = "ablation_report",
) -> results.AblationResult:
    """Run the ablation pipeline (the same one a cluster runs); download its comparison.

    ``parallelism`` trials at a time (kfp.local caps it at 2): on a small CPU machine one TensorFlow
    process already uses every core.
    """
    run_name = run_name or time.strftime("ablation-%Y%m%d-%H%M%S")
    arguments = ablation_arguments(config, data, trials, run_name=run_name)
    start = time.perf_counter()
    with step_environment(experiment_env()):
        ablation_experiment_id()
        task = execute(
            build_ablation_pipeline(parallelism=parallelism),
            arguments,
            pipeline_root=pipeline_root,
            on_failure=lambda: results.fail_open_ablation_runs(run_name),
        )
        return results.ablation_run(str(task.output), report_dir, time.perf_counter() - start)
