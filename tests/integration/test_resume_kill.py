"""A hard kill during Stage 2, then ``run --resume`` (issue 11's probe): the run finishes in the same
MLflow parent, loses at most one epoch, and the metric curves have no gap.

Slow (two tiny pipeline runs, one of them killed): ``pytest -m slow tests/integration/test_resume_kill.py``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from melanoma_mlops import EXPERIMENT_NAME
from melanoma_pipelines import cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY = ["--weights", "none", "--image-size", "32", "--batch-size", "16", "--gradcam-samples", "2"]
EPOCHS = ["--stage1-epochs", "1", "--stage2-epochs", "4", "--patience", "10"]
WAIT_S = 900


def _epoch_lines(log: Path) -> list[int]:
    text = log.read_text(errors="replace") if log.exists() else ""
    return [int(n) for n in re.findall(r"stage2 epoch (\d+)/4:", text)]


def test_a_run_killed_in_stage2_resumes_into_the_same_parent(
    demo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    script = Path(sys.executable).parent / "melanoma-mlops"
    cmd = [str(script), "run", "--data", str(demo_dir), "--run-name", "killed"]
    proc = subprocess.Popen(
        [*cmd, *TINY, *EPOCHS], cwd=tmp_path, env={**os.environ}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + WAIT_S
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            logs = sorted((tmp_path / "local_outputs" / "logs").glob("*.log"))
            if logs and _epoch_lines(logs[-1]):
                break
            time.sleep(1)
    finally:
        alive = proc.poll() is None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the CLI and every step at once, as an OOM kill does
        proc.wait()
    assert alive, "the run ended before Stage 2 was reached"
    done_before = max(_epoch_lines(logs[-1]))
    assert done_before >= 1

    assert cli.main(["run", "--resume", "killed"]) == 0

    client = MlflowClient()
    exp = client.get_experiment_by_name(EXPERIMENT_NAME)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.info.run_name == "killed"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0].info.run_id
    stage2 = sorted((r for r in runs if r.info.run_name == "stage2"), key=lambda r: r.info.start_time)
    assert [r.info.status for r in stage2] == ["KILLED", "FINISHED"]
    assert "reaped.reason" in stage2[0].data.tags or "pipeline run was resumed" in str(stage2[0].data.tags)
    assert all(r.info.status != "RUNNING" for r in runs)
    # No gap and no repeat: one point per epoch on the parent and on the resumed step's run.
    for run_id in (parent, stage2[1].info.run_id):
        steps = [m.step for m in client.get_metric_history(run_id, "stage2/val_loss")]
        assert sorted(steps) == [1, 2, 3, 4], (run_id, steps)
    # At most one epoch lost: the resumed attempt started at most one epoch before the kill point.
    log = sorted((tmp_path / "local_outputs" / "logs").glob("*.log"))[-1].read_text()
    resumed_from = int(re.search(r"stage2: resuming after epoch (\d+) of 4", log).group(1))
    assert resumed_from >= done_before - 1
    # Earlier steps were reused, not redone: one run of each in the parent.
    assert sum(r.info.run_name == "split" for r in runs) == 1
