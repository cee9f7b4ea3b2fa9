"""Full disks (issue 24), on a real filesystem: a tmpfs of a few MB (tests/small_volume.py; needs
root, else these skip) fills up and the kernel says ENOSPC. A checkpoint that does not fit leaves
nothing; a run whose artifact store is a 30 MB volume is refused before validation, with how much it
needs; (slow) a volume that fills up during Stage 1 keeps only the previous complete checkpoint.
tests/unit/test_disk_full.py injects ENOSPC into each write in-process and covers the same removal
code paths in seconds.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import keras
import pytest

from melanoma_mlops.model import checkpoint

MB = 1_000_000


def _small_model(units: int = 64) -> keras.Model:
    inputs = keras.Input((units,))
    model = keras.Model(inputs, keras.layers.Dense(units)(inputs))
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


# ------------------------------------------------------------------------------ a real full disk
def _need_a_small_volume() -> None:
    """Skip where no tmpfs can be mounted (not root), saying why; under CI=true, fail."""
    import small_volume
    from docker_env import missing_tool

    if small_volume.available():
        missing_tool(small_volume.available())


def test_a_checkpoint_on_a_full_tmpfs_leaves_nothing(tmp_path: Path) -> None:
    import small_volume

    _need_a_small_volume()
    with small_volume.small_volume(tmp_path / "vol", 2 * MB) as vol:
        saver = checkpoint.EpochCheckpoint(vol / "ckpt")
        saver.set_model(_small_model(600))  # 360k variables + Adam's moments: ~4.3 MB
        with pytest.raises(OSError) as err:
            saver.save(1)
        assert err.value.errno == errno.ENOSPC
        assert list(vol.iterdir()) == [] and shutil.disk_usage(vol).used < 0.1 * MB


# ------------------------------------------------------------------------------ the run, on a full disk
TINY = ["--weights", "none", "--image-size", "32", "--batch-size", "16", "--gradcam-samples", "2"]


def test_a_run_whose_artifact_store_is_a_30_mb_volume_is_refused_before_validate(
    mlflow_store: str, demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 24's probe, as a user meets it: the run used to fail at Stage 1's first checkpoint and
    leave 26 MB of it behind; now it says before validation how much it needs there."""
    import small_volume

    from melanoma_pipelines import cli

    _need_a_small_volume()
    with small_volume.small_volume(tmp_path / "mlruns" / "artifacts", 30 * MB) as volume:
        code = cli.main(["run", "--data", str(demo_dir), *TINY])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, err
        assert err[-1].startswith("error: not enough disk space:")
        assert str(volume) in err[-1] and "MB is free" in err[-1]
        assert small_volume.used_bytes(volume) == 0  # nothing written there
    assert not list((tmp_path / "local_outputs").glob("*/*"))  # no step ran


@pytest.mark.slow
def test_a_disk_that_fills_up_during_stage1_keeps_no_partial_checkpoint(
    demo_dir: Path, tmp_path: Path
) -> None:
    """The artifact store's volume has room at the start, then something else fills it while Stage 1
    trains: the epoch's checkpoint upload fails with ENOSPC, and what it had written is removed; the
    previous epoch's complete checkpoint stays (``--resume`` continues from it)."""
    import subprocess
    import sys
    import time

    import small_volume

    _need_a_small_volume()
    size = 1_200 * MB  # above the run's own estimate (about 1 GB there), so the preflight lets it start
    with small_volume.small_volume(tmp_path / "mlruns" / "artifacts", size) as volume:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"}
        script = str(Path(sys.executable).parent / "melanoma-mlops")
        out = tmp_path / "run.txt"
        epochs = ["--stage1-epochs", "3", "--stage2-epochs", "1", "--patience", "10"]
        with out.open("w") as fh:
            cli = subprocess.Popen(
                [script, "run", "--data", str(demo_dir), "--run-name", "full", *TINY, *epochs],
                cwd=tmp_path, env=env, stdout=fh, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 1800
            while "stage1 epoch 1/3" not in out.read_text() and time.monotonic() < deadline:
                assert cli.poll() is None, out.read_text()[-3000:]
                time.sleep(0.5)
            filler = small_volume.fill(volume, leave_bytes=30 * MB)  # the disk fills up meanwhile
            code = cli.wait(timeout=1800)
        finally:
            if cli.poll() is None:
                cli.kill()
        lines = out.read_text().splitlines()
        assert code != 0
        assert any(
            line.startswith("error: stage1:") and "No space left on device" in line for line in lines
        ), lines[-20:]
        checkpoints = sorted(p for p in volume.rglob("checkpoints/stage1/*") if p.is_dir())
        assert [p.name for p in checkpoints] == ["epoch-1"], checkpoints  # the complete one only
        names = sorted(p.name for p in checkpoints[0].iterdir())
        assert "state.json" in names  # complete
        filler.unlink()
        kept = small_volume.used_bytes(volume)
        print(f"after the failure the volume holds {kept / MB:.0f} MB (the epoch-1 checkpoint and logs)")
        assert kept < 0.4 * size
