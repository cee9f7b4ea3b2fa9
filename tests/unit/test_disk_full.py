"""Full disks (issue 24): the run checks free space where it writes before the large writes, with a
message saying how much is needed, and a write that fails anyway removes what it wrote (a
checkpoint, a model file, an upload to the artifact store, image shards).

These tests inject ENOSPC half-way through each write; tests/integration/test_disk_full_volume.py
mounts a real tmpfs of a few MB (tests/small_volume.py; root only) and lets the kernel say it.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections import namedtuple
from pathlib import Path

import keras
import numpy as np
import pytest

from melanoma_mlops import artifact_cleanup, disk_space, preflight
from melanoma_mlops.config import RunConfig
from melanoma_mlops.model import checkpoint, network, shards, training

MB = 1_000_000
Usage = namedtuple("Usage", "total used free")


def _enospc(path: str = "") -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


# ------------------------------------------------------------------------------ checks before
def test_needs_on_one_filesystem_add_up_and_the_message_says_how_much(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(disk_space.shutil, "disk_usage", lambda _: Usage(100 * MB, 70 * MB, 30 * MB))
    disk_space.check([disk_space.Need(str(tmp_path / "a"), 20 * MB, "models")])  # fits
    needs = [
        disk_space.Need(str(tmp_path / "a"), 20 * MB, "models"),
        disk_space.Need(f"file://{tmp_path}/store", 25 * MB, "checkpoints"),
        disk_space.Need("s3://bucket/prefix", 10**12, "remote: not measured"),
    ]
    with pytest.raises(disk_space.DiskSpaceError) as err:
        disk_space.check(needs)
    message = str(err.value)
    assert "45 MB is needed" in message and "only 30 MB is free" in message and "Free 15 MB" in message
    assert f"models in {tmp_path / 'a'}: 20 MB" in message and "checkpoints" in message
    assert "s3://" not in message


def test_the_sizes_are_those_of_the_real_network(tmp_path: Path) -> None:
    clf = network.build_classifier(32, "none", 0.5)
    assert sum(int(np.prod(v.shape)) for v in clf.variables) == disk_space.MODEL_VARIABLES
    network.unfreeze(clf, bn_inference=True)
    assert sum(int(np.prod(v.shape)) for v in clf.trainable_variables) == disk_space.ALL_LAYERS_TRAINABLE
    saved = training.save(clf, training.StageResult(), tmp_path)
    assert abs(saved.stat().st_size - disk_space.MODEL_BYTES) < 0.02 * disk_space.MODEL_BYTES


def test_preflight_names_every_problem_at_once(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    not_weights = tmp_path / "weights.h5"
    not_weights.write_text("hello")
    config = RunConfig.from_params({"weights": str(tmp_path / "nonexistent" / "w.h5")})
    with pytest.raises(preflight.PreflightError) as err:
        preflight.check_run(config, str(tmp_path / "no-data"), blocker / "outputs")
    message = str(err.value)
    assert f"--data {tmp_path / 'no-data'}: no such file or folder" in message
    assert f"--weights {tmp_path / 'nonexistent' / 'w.h5'}: no such file" in message
    assert f"--pipeline-root {blocker / 'outputs'} cannot be written" in message
    assert preflight.weights_problem(str(not_weights)) == (
        f"--weights {not_weights}: not a weights file (neither HDF5 .h5 nor Keras .keras)"
    )
    hdf5 = tmp_path / "real.h5"
    hdf5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    assert preflight.weights_problem(str(hdf5)) is None


def test_preflight_refuses_a_run_that_does_not_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").mkdir()
    monkeypatch.setattr(disk_space.shutil, "disk_usage", lambda _: Usage(100 * MB, 70 * MB, 30 * MB))
    with pytest.raises(preflight.PreflightError, match=r"not enough disk space: 995 MB is needed"):
        preflight.check_run(RunConfig(), str(tmp_path / "data"), tmp_path / "out")


def test_a_bad_weights_path_fails_before_the_first_step(
    mlflow_store: str, demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow.tracking import MlflowClient

    from melanoma_mlops import EXPERIMENT_NAME
    from melanoma_pipelines import cli

    code = cli.main(["run", "--data", str(demo_dir), "--weights", "/nonexistent/w.h5", "--image-size", "32"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: --weights /nonexistent/w.h5: no such file")
    assert not list((tmp_path / "local_outputs").glob("*/*"))  # no step ran, not even validate
    exp = MlflowClient().get_experiment_by_name(EXPERIMENT_NAME)
    assert exp is None or not MlflowClient().search_runs([exp.experiment_id])  # no run was opened


def test_the_ablation_checks_its_inputs_before_its_first_step_too(
    mlflow_store: str, demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from melanoma_pipelines import cli

    code = cli.main(["ablation", "--data", str(demo_dir), "--weights", "/nonexistent/w.h5", "--seeds", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert err[-1].startswith("error: --weights /nonexistent/w.h5: no such file")
    assert not list((tmp_path / "local_outputs").glob("*/*"))  # no step ran


# ------------------------------------------------------------------------------ injected ENOSPC
def _small_model(units: int = 64) -> keras.Model:
    inputs = keras.Input((units,))
    model = keras.Model(inputs, keras.layers.Dense(units)(inputs))
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def test_a_checkpoint_that_fails_half_way_leaves_the_previous_one_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saver = checkpoint.EpochCheckpoint(tmp_path / "ckpt")
    saver.set_model(_small_model())
    saver.save(1)
    calls = []
    real = checkpoint._save_arrays

    def disk_fills(path: Path, arrays: list) -> None:
        calls.append(path)
        if len(calls) == 2:  # the variables were written, the optimizer's moments do not fit
            path.write_bytes(b"partial")
            raise _enospc(str(path))
        real(path, arrays)

    monkeypatch.setattr(checkpoint, "_save_arrays", disk_fills)
    with pytest.raises(OSError, match="No space left"):
        saver.save(2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no ckpt.tmp
    assert checkpoint.read_state(tmp_path / "ckpt")["epochs_done"] == 1


def test_a_model_file_that_fails_half_way_is_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _small_model()

    def disk_fills(path: str, **_: object) -> None:
        Path(path).write_bytes(b"PK\x03\x04 half a zip")
        raise _enospc(str(path))

    monkeypatch.setattr(model, "save", disk_fills)
    with pytest.raises(OSError):
        training.save(model, training.StageResult(), tmp_path / "model")
    assert list((tmp_path / "model").iterdir()) == []


def test_an_upload_that_fails_half_way_is_removed_from_the_artifact_store(
    mlflow_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.store.artifact import local_artifact_repo
    from mlflow.tracking import MlflowClient

    from melanoma_mlops import tracking

    run_id = tracking.start_pipeline_run("upload")
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    for name in ("optimizer.npz", "state.json", "variables.npz"):
        (folder / name).write_bytes(os.urandom(1 << 16))

    def one_file_then_full(src: str, dst: str) -> None:
        shutil.copy2(Path(src) / "optimizer.npz", Path(dst) / "optimizer.npz")
        (Path(dst) / "state.json").write_bytes(b"half")
        raise _enospc(str(Path(dst) / "state.json"))

    monkeypatch.setattr(local_artifact_repo, "shutil_copytree_without_file_permissions", one_file_then_full)
    with pytest.raises(OSError):
        artifact_cleanup.upload_or_remove(run_id, str(folder), "checkpoints/stage1/epoch-2")
    assert MlflowClient().list_artifacts(run_id, "checkpoints/stage1") == []
    store = Path(MlflowClient().get_run(run_id).info.artifact_uri.removeprefix("file://"))
    assert not (store / "checkpoints" / "stage1" / "epoch-2").exists()


def test_shards_that_fail_half_way_leave_no_part_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datagen import write_image

    images = [str(write_image(tmp_path / "img" / f"{i}.png", i, size=32)) for i in range(6)]
    real = shards.dataset.decode_batches

    def disk_fills(uris: list[str], image_size: int):
        for n, batch in enumerate(real(uris[:3], image_size)):
            yield batch
            if n == 0:
                raise _enospc(str(tmp_path / "shards"))

    monkeypatch.setattr(shards, "SHARD_BYTES", 1)  # one image per shard file: several files before the fault
    monkeypatch.setattr(shards.dataset, "decode_batches", disk_fills)
    with pytest.raises(OSError):
        shards.write_part(str(tmp_path / "shards"), [f"k{i}" for i in range(6)], images, 32)
    assert list((tmp_path / "shards").iterdir()) == []
