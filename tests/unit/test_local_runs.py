"""The local runner's bookkeeping: run names from what differs, the pruning policy, and what
``--resume`` accepts and refuses."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from melanoma_mlops import config as cfg
from melanoma_mlops import heartbeat, tracking
from melanoma_mlops.errors import ConfigError
from melanoma_pipelines import cli
from melanoma_pipelines.local import prune_outputs
from melanoma_pipelines.parent_run import config_of, create_parent, prepare_resume, run_name_for


def test_a_run_is_named_after_what_differs_from_the_defaults() -> None:
    defaults = cfg.RunConfig()
    assert run_name_for(defaults, defaults) == "two-stage"
    changed = defaults.replace(stage2_lr=3e-5, seed=7, augment=False)
    assert run_name_for(changed, defaults) == "two-stage lr2=3e-05 seed=7 augment=false"
    # A demo run is compared with the demo preset: only what the user set shows.
    demo = cfg.RunConfig.from_params(cfg.DEMO_PRESET)
    assert run_name_for(demo.replace(stage2_lr=3e-5), demo) == "two-stage lr2=3e-05"
    # The swept options lead (the UI's name column is narrow); the data folder's name ends it.
    name = run_name_for(defaults.replace(image_size=64, stage1_lr=0.01), defaults, "/data/isic2020/")
    assert name == "two-stage lr1=0.01 size=64 isic2020"


def test_old_run_folders_are_pruned_newest_kept(tmp_path: Path) -> None:
    for i in range(5):
        folder = tmp_path / f"melanoma-two-stage-2026-01-0{i}"
        (folder / "stage2").mkdir(parents=True)
        os.utime(folder, (time.time() - 100 + i, time.time() - 100 + i))
    (tmp_path / "unrelated").mkdir()
    removed = prune_outputs(tmp_path, keep=2)
    assert sorted(p.name for p in removed) == [f"melanoma-two-stage-2026-01-0{i}" for i in range(3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "melanoma-two-stage-2026-01-03", "melanoma-two-stage-2026-01-04", "unrelated",
    ]  # fmt: skip
    assert prune_outputs(tmp_path, keep=-1) == []


def test_resume_takes_the_settings_the_run_was_started_with(mlflow_store: str, tmp_path: Path) -> None:
    config = cfg.RunConfig().replace(stage2_lr=3e-5, augment=False, image_size=64, seed=7)
    run_id = create_parent("to-resume", config, "/data/x", tmp_path)
    tracking.finish_pipeline_run(run_id, "FAILED")
    again, data = config_of(MlflowClient().get_run(run_id))
    assert again == config and data == "/data/x"
    resumed_id, name, resumed_config, _ = prepare_resume("to-resume")
    assert (resumed_id, name, resumed_config) == (run_id, "to-resume", config)


def test_resume_refuses_a_finished_or_a_live_run(mlflow_store: str, tmp_path: Path) -> None:
    done = create_parent("done", cfg.RunConfig(), "/d", tmp_path)
    tracking.finish_pipeline_run(done)
    with pytest.raises(ConfigError, match="finished: there is nothing to resume"):
        prepare_resume(done)
    live = create_parent("live", cfg.RunConfig(), "/d", tmp_path)
    heartbeat.Heartbeat([live]).beat()  # this very process: alive
    with pytest.raises(ConfigError, match="is still running"):
        prepare_resume("live")
    with pytest.raises(ConfigError, match="no run with that id or name"):
        prepare_resume("never-ran")


def test_resume_takes_no_other_options(mlflow_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--resume", "x", "--stage2-lr", "1e-4"]) == 2
    assert "--resume continues a run with its own settings: drop --stage2-lr" in capsys.readouterr().err
