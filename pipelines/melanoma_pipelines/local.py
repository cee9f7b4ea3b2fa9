"""Run either DAG on this machine with ``kfp.local``: steps as processes of this Python
(``SubprocessRunner``, the default; each step forked from a warm process that imported TensorFlow,
MLflow and the steps once: :mod:`melanoma_pipelines.warm_steps`) or each in its container
(``DockerRunner``, see :mod:`melanoma_pipelines.containers`; main DAG only).

One runner for the main DAG and the ablation, with one environment policy: the tracking store
(and, for the ablation, its experiment), the MLflow retry budget and telemetry switches are pinned
in the environment the steps inherit for the duration of the run, then restored.

A local run of the main DAG also:

- reaps first: RUNNING runs whose process is gone or silent are marked KILLED (``runs reap``);
- creates the MLflow parent run itself (name from what differs from the defaults) and hands it to
  the validate step (:data:`melanoma_mlops.tracking.PARENT_RUN_ENV`), beating its heartbeat
  while the steps run; ``--resume`` hands over the run it continues instead;
- prints through :class:`~melanoma_pipelines.console.Console` (step lines, epoch lines; the rest in
  ``<pipeline_root>/logs/``);
- prunes old runs' outputs afterwards (:func:`prune_outputs`: the newest ``keep_outputs`` kept).
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfp import local
from mlflow.tracking import MlflowClient

from melanoma_mlops import TELEMETRY_OFF, envvars, heartbeat, preflight, tracking, tracking_client
from melanoma_mlops.config import RunConfig
from melanoma_mlops.errors import MelanomaError
from melanoma_mlops.experiments.ablation.design import experiment_env
from melanoma_mlops.experiments.ablation.runs import ablation_experiment_id

from . import DEFAULT_IMAGE, PIPELINE_NAME, containers, results, warm_steps
from .ablation_dag import ablation_arguments, build_ablation_pipeline
from .console import Console, last_exception
from .dag import TASK_ORDER, build_pipeline, default_run_name, pipeline_arguments
from .parent_run import create_parent, prepare_resume
from .runtime import ERROR_FILE_ENV

logger = logging.getLogger(__name__)

#: Local runs whose outputs are kept in the pipeline root (older ones are pruned after a run).
DEFAULT_KEEP_OUTPUTS = 3
LOG_DIR = "logs"


class PipelineError(MelanomaError):
    """A step of the local pipeline run failed; the message is that step's own."""


@contextlib.contextmanager
def step_environment(extra: Mapping[str, str] | None = None) -> Iterator[None]:
    """Pin what the step subprocesses inherit (tracking store + ``extra``); restore it afterwards."""
    defaults: dict[str, str] = dict(TELEMETRY_OFF)
    tracking_client.apply_client_defaults(defaults)
    pinned = {
        **{k: os.environ.get(k) or v for k, v in defaults.items()},
        "MLFLOW_TRACKING_URI": tracking_client.tracking_uri(),
        **(extra or {}),
    }
    with envvars.pinned(pinned):
        yield


def execute(
    pipeline: Any,
    arguments: dict[str, Any],
    *,
    pipeline_root: str | Path,
    on_failure: Callable[[], None] | None = None,
    console: Console | None = None,
    runner: Any = None,
    error_file: Path | None = None,
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
        with console or contextlib.nullcontext():
            return pipeline(**arguments)
    except RuntimeError as exc:
        message = error_file.read_text(encoding="utf-8").strip() if error_file.exists() else ""
        if console is not None:
            console.step_failed()
        if not message and console is not None and (raised := last_exception(console.log_path)):
            message = f"{exc}: {raised}"
        if not message:
            message = (
                f"{exc}: the step ended without reporting an error (killed? out of memory?)"
                if "finished with status" in str(exc)
                else f"the local pipeline failed: {exc}"
            )
        if console is not None:
            message += f"\nfull log: {console.log_path}"
        if on_failure is not None:
            on_failure()
        raise PipelineError(message) from None
    finally:
        # kfp.local swaps builtins.print for an indenting one around each task; with parallel
        # tasks (ParallelFor) the swaps interleave and can leave it swapped for good.
        builtins.print = original_print
        os.environ.pop(ERROR_FILE_ENV, None)
        error_file.unlink(missing_ok=True)


def log_path(pipeline_root: str | Path, name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]
    return Path(pipeline_root) / LOG_DIR / f"{stamp}-{safe}.log"


# ---------------------------------------------------------------------------------- pruning
def prune_outputs(pipeline_root: str | Path, keep: int = DEFAULT_KEEP_OUTPUTS) -> list[Path]:
    """Delete all but the newest ``keep`` local run folders (and logs) under the pipeline root.

    kfp.local writes one folder per run (``<pipeline>-<timestamp>``) holding every step's outputs;
    the MLflow store keeps what a run is judged by (metrics, reports, the registered model), so
    only the newest few folders are kept for inspection and ``--resume``. ``keep`` < 0 keeps all.
    """
    root = Path(pipeline_root)
    if keep < 0 or not root.is_dir():
        return []
    removed: list[Path] = []
    for pattern in (f"{PIPELINE_NAME}-*", "melanoma-ablation-*", f"{LOG_DIR}/*.log"):
        found = sorted(root.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in found[keep:]:
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
            removed.append(old)
    return removed


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


def _containers(
    settings: DockerSettings, data: str, pipeline_root: Path, weights: str = ""
) -> tuple[containers.StepContainers, Path]:
    """The containers' plan and the error file, in a pipeline root the containers may write."""
    root = containers.writable_by_containers(pipeline_root)
    error_file = root / f".step-errors-{os.getpid()}.txt"
    error_file.write_text("", encoding="utf-8")
    if os.getuid() == 0:
        os.chown(error_file, containers.IMAGE_UID, containers.IMAGE_GID)
    plan = containers.plan(settings.image, tracking_client.tracking_uri(), data, str(error_file), weights)
    return plan, error_file


def run_local(
    config: RunConfig,
    data: str,
    *,
    pipeline_root: str | Path = "local_outputs",
    run_name: str | None = None,
    resume: str | None = None,
    verbose: bool = False,
    keep_outputs: int = DEFAULT_KEEP_OUTPUTS,
    stale_after_s: float = heartbeat.AUTO_REAP_STALE_AFTER_S,
    docker: DockerSettings | None = None,
    warm: bool = True,
) -> results.LocalRunResult:
    """Run the main DAG (or continue the run ``resume``); return what MLflow recorded.

    With ``docker`` every step runs in a container of ``docker.image`` and reports to an MLflow
    server (``MLFLOW_TRACKING_URI=http://...``, or the MLflow server container it starts). Otherwise
    each step is a fork of a warm process (``warm``, the default) or a new Python process.
    """
    start = time.perf_counter()
    if not resume:
        check_source(config, data)
    server = {"MLFLOW_TRACKING_URI": docker.tracking_uri()} if docker is not None else {}
    with step_environment(server), warm_steps.installed(warm and docker is None):
        store = _artifact_location(tracking.configure())
        _reap_stale_runs(stale_after_s)

        def check(config: RunConfig, data: str) -> None:  # before anything is changed or started
            preflight.check_run(config, data, pipeline_root, store)
            if resume:
                check_source(config, data)

        if resume:
            parent, run_name, config, data = prepare_resume(resume, check)
            logger.info("resuming run %s (%s): finished steps are reused", run_name, parent)
        else:
            check(config, data)
            run_name = run_name or default_run_name()
            parent = create_parent(run_name, config, data, pipeline_root)
        logger.info("MLflow run %s: %s", run_name, results.run_url(parent))
        console = Console(log_path(pipeline_root, run_name), steps=TASK_ORDER, verbose=verbose)
        image, customize, runner, error_file = _step_runner(
            docker, data, Path(pipeline_root), parent, config.training.weights
        )
        with step_environment({tracking.PARENT_RUN_ENV: parent}), heartbeat.heartbeat([parent]):
            try:
                task = execute(
                    build_pipeline(image, customize=customize),
                    pipeline_arguments(config, data, run_name=run_name),
                    pipeline_root=pipeline_root,
                    console=console,
                    runner=runner,
                    error_file=error_file,
                )
            except BaseException as exc:
                _close_parent(parent, exc)
                raise
        tracking.tidy_finished(parent)
        result = results.main_run(
            parent, str(task.output), config.gate.model_name, time.perf_counter() - start
        )
    result.console_lines = console.lines_shown
    result.log_path = console.log_path
    result.pruned = prune_outputs(pipeline_root, keep_outputs)
    return result


def check_source(config: RunConfig, data: str) -> None:
    """The data source read as the validate step will read it (layout, labels, paths: a listing and
    the CSV, no image opened), so that a wrong layout or label is one line within a second or two,
    before the store is opened, a step starts or a run is recorded. The images themselves are the
    validate step's (Great Expectations'); what a run needs besides is :mod:`melanoma_mlops.preflight`'s."""
    from melanoma_mlops.data.sources.reader import load_source

    d = config.data
    load_source(data, layout=d.layout, task=d.task, allow_outside_root=d.allow_outside_root)


def _artifact_location(experiment_id: str) -> str:
    """Where the experiment's artifacts go (a local folder is checked for free space before a run)."""
    return str(MlflowClient().get_experiment(experiment_id).artifact_location or "")


def _reap_stale_runs(stale_after_s: float) -> None:
    """Mark RUNNING runs whose process is gone or silent KILLED, so the store says what is running."""
    for item in heartbeat.reap_stale_runs(stale_after_s):
        logger.warning(
            "marked stale run %s (%s, %s) KILLED: %s",
            item.run_name,
            item.run_id,
            item.experiment,
            item.reason,
        )


def _step_runner(
    docker: DockerSettings | None, data: str, pipeline_root: Path, parent: str, weights: str = ""
) -> tuple[str, Callable[[dict[str, Any]], None] | None, Any, Path | None]:
    """(image, task customizer, kfp runner, error file) for the steps: this Python's subprocesses
    (kfp's defaults) or, with ``docker``, the containers' plan."""
    if docker is None:
        return DEFAULT_IMAGE, None, None, None
    plan, error_file = _containers(docker, data, pipeline_root, weights)
    # Per-task environment replaces the runner's: what the steps must see goes on each task.
    plan.env[tracking.PARENT_RUN_ENV] = parent
    return docker.image, plan.customize, plan.runner(), error_file


def _close_parent(parent: str, exc: BaseException) -> None:
    """The run failed or was interrupted: a parent run still RUNNING is closed FAILED (KILLED on
    Ctrl-C), quickly and without masking the error (an unreachable server is skipped)."""
    with tracking_client.quick_fail(), contextlib.suppress(Exception):
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        if MlflowClient().get_run(parent).info.status == "RUNNING":
            tracking.finish_pipeline_run(parent, status)


def run_ablation_local(
    config: RunConfig,
    data: str,
    trials: list[str],
    *,
    pipeline_root: str | Path = "local_outputs",
    run_name: str | None = None,
    parallelism: int = 1,
    report_dir: str | Path = "ablation_report",
    verbose: bool = False,
    warm: bool = True,
) -> results.AblationResult:
    """Run the ablation pipeline (the same one a cluster runs); download its comparison.

    ``parallelism`` trials at a time (kfp.local caps it at 2): on a small CPU machine one TensorFlow
    process already uses every core.
    """
    run_name = run_name or time.strftime("ablation-%Y%m%d-%H%M%S")
    arguments = ablation_arguments(config, data, trials, run_name=run_name)
    start = time.perf_counter()
    check_source(config, data)
    with step_environment(experiment_env()), warm_steps.installed(warm):
        # Before the first step, as for a run: one trial's needs (trials run one after the other).
        preflight.check_run(config, data, pipeline_root, _artifact_location(ablation_experiment_id()))
        task = execute(
            build_ablation_pipeline(parallelism=parallelism),
            arguments,
            pipeline_root=pipeline_root,
            on_failure=lambda: results.fail_open_ablation_runs(run_name),
            console=Console(log_path(pipeline_root, run_name), verbose=verbose),
        )
        return results.ablation_run(str(task.output), report_dir, time.perf_counter() - start)
