"""The MLflow parent run of a local run of the main pipeline: its name, its creation, and finding and
checking it again for ``--resume``.

The parent holds every setting as a param from the start, so a run can be resumed from MLflow alone
(:func:`config_of`) and two runs compare on what differs, which their names say (:func:`run_name_for`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from melanoma_mlops import EXPERIMENT_NAME, heartbeat, liveness, tracking, tracking_client
from melanoma_mlops.config import RunConfig
from melanoma_mlops.errors import ConfigError

#: The parent run's tag naming the folder that holds its outputs (for ``--resume`` and pruning).
PIPELINE_ROOT_TAG = "local.pipeline_root"


def create_parent(run_name: str, config: RunConfig, data: str, pipeline_root: str | Path) -> str:
    """The MLflow parent run of a new local run, with every setting as a param from the start."""
    run_id = tracking.start_pipeline_run(
        run_name,
        tags={"data.source": data, PIPELINE_ROOT_TAG: str(Path(pipeline_root).resolve())},
    )
    window = f"{tracking_client.outage_window_s():g}"
    tracking.log_parent_params(
        run_id, {"data": data, **config.as_params(), tracking_client.OUTAGE_PARAM: window}
    )
    return run_id


def find_run(reference: str) -> Any:
    """A parent run of the main pipeline by id or by name (the newest of that name)."""
    client = MlflowClient()
    exp = client.get_experiment_by_name(EXPERIMENT_NAME)
    if exp is None:
        raise ConfigError(
            f"no experiment {EXPERIMENT_NAME!r} in {tracking_client.tracking_uri()}: nothing to resume"
        )
    with contextlib.suppress(Exception):
        run = client.get_run(reference)
        if run.info.experiment_id == exp.experiment_id:
            return run
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"attributes.run_name = {tracking.quote(reference)} and tags.pipeline = 'two-stage'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise ConfigError(
            f"--resume {reference}: no run with that id or name in experiment {EXPERIMENT_NAME} "
            f"({tracking_client.tracking_uri()})"
        )
    return runs[0]


def config_of(run: Any) -> tuple[RunConfig, str]:
    """The configuration and data source a parent run was started with (its params)."""
    from melanoma_mlops import config as cfg

    params = run.data.params
    if "data" not in params or "stage1_lr" not in params:
        raise ConfigError(
            f"run {run.info.run_id} does not record its settings as params (made by an older version?): "
            "it cannot be resumed; start a new run"
        )
    casts: dict[type, Callable[[str], Any]] = {
        int: int,
        float: float,
        str: str,
        bool: lambda v: v.strip().lower() == "true",
    }
    values: dict[str, Any] = {"seed": int(params.get("seed", cfg.RunConfig.seed))}
    for group in cfg.GROUPS.values():
        for f in dataclasses.fields(group):
            if f.name in params:
                values[f.name] = casts[cfg.kind_of(f)](params[f.name])
    return RunConfig.from_params(values), params["data"]


#: Seconds a resume waits for a process of this machine that was killed a moment ago to be gone.
KILLED_GRACE_S = 5.0


def _alive(run: Any) -> bool:
    """Is the run's process still running? A process of this machine that is alive is given
    :data:`KILLED_GRACE_S` to die (``kill -9`` then ``--resume`` at once); one elsewhere is judged
    by its heartbeat's age (three beats)."""
    if heartbeat.staleness(run, stale_after_s=3 * heartbeat.heartbeat_interval_s()) is not None:
        return False
    local = heartbeat.beating_process(run)
    if local is None or liveness.is_alive(*local) is None:
        return True  # not a process this machine can look at: the fresh heartbeat says it runs
    return not liveness.wait_gone(*local, timeout_s=KILLED_GRACE_S)


def prepare_resume(
    reference: str, check: Callable[[RunConfig, str], None] | None = None
) -> tuple[str, str, RunConfig, str]:
    """Check that a run can be continued (``check``: what it will need, before anything changes);
    close what its dead processes left open.

    Returns (run id, run name, configuration, data source).
    """
    client = MlflowClient()
    run = find_run(reference)
    run_id = run.info.run_id
    if run.info.status == "FINISHED":
        raise ConfigError(f"run {run.info.run_name} ({run_id}) finished: there is nothing to resume")
    if run.info.status == "RUNNING" and _alive(run):
        tags = run.data.tags
        host = tags.get(heartbeat.HEARTBEAT_HOST_TAG, "?")
        pid = tags.get(heartbeat.HEARTBEAT_PID_TAG, "?")
        raise ConfigError(
            f"run {run.info.run_name} ({run_id}) is still running (heartbeat from {host} pid {pid} "
            f"at {tags.get(heartbeat.HEARTBEAT_AT_TAG, '?')}): stop it first, or wait"
        )
    config, data = config_of(run)
    if check is not None:
        check(config, data)
    exp_ids = [run.info.experiment_id]
    for child in tracking.descendants(client, run_id, exp_ids):
        if child.info.status == "RUNNING":
            heartbeat.kill_run(
                client, child.info.run_id, f"its pipeline run was resumed (--resume {reference})"
            )
    for key in ("reaped.reason", "reaped.by", "reaped.at"):
        if key in run.data.tags or key in client.get_run(run_id).data.tags:
            with contextlib.suppress(Exception):
                client.delete_tag(run_id, key)
    client.set_tag(run_id, "resumed.at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return run_id, run.info.run_name, config, data


#: Options named first in a run name: the ones people sweep (the UI's name column is narrow).
NAME_FIRST = ("stage2_lr", "stage1_lr", "seed", "stage2_epochs", "stage1_epochs", "dropout", "augment")
#: Short names in run names.
SHORT_NAMES = {
    "stage1_lr": "lr1",
    "stage2_lr": "lr2",
    "stage1_epochs": "ep1",
    "stage2_epochs": "ep2",
    "image_size": "size",
    "batch_size": "batch",
    "val_fraction": "val",
    "test_fraction": "test",
    "threshold_rule": "rule",
    "target_sensitivity": "target_sens",
    "gradcam_samples": "gradcam",
    "mixed_precision": "amp",
}


def run_name_for(config: RunConfig, baseline: RunConfig, data: str = "") -> str:
    """``two-stage lr2=3e-05 seed=7``: the options that differ from the baseline (the defaults, or
    the demo preset for a demo run), so the MLflow runs table says what changed. The options people
    sweep come first, then the rest in configuration order, then the data folder's name."""
    ours, base = config.as_params(), baseline.as_params()
    order = [*NAME_FIRST, *(k for k in ours if k not in NAME_FIRST)]
    diffs = []
    for key in order:
        value = ours[key]
        if value == base.get(key):
            continue
        if isinstance(value, bool):
            text = str(value).lower()
        else:
            text = f"{value:g}" if isinstance(value, float) else str(value)
        diffs.append(f"{SHORT_NAMES.get(key, key)}={text}")
    label = Path(data.rstrip("/")).name if data else ""
    return " ".join(["two-stage", *diffs, *([label] if label else [])])[:250]
