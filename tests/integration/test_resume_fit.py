"""Resuming a fit from its epoch checkpoint (issue 11), through model/training.fit's own hooks: two
ResNet50 fits in this process, too heavy for the unit tier (tests/unit/test_resume.py keeps the rest)."""

from __future__ import annotations

from pathlib import Path

import keras

from melanoma_mlops.model import checkpoint


def test_training_fit_resumes_from_a_checkpoint_among_its_callbacks(demo_dir: Path, tmp_path: Path) -> None:
    """model/training.fit's hooks: the checkpoint sets the initial epoch and supplies the history."""
    from melanoma_mlops.data import manifest
    from melanoma_mlops.data.sources.reader import load_source
    from melanoma_mlops.model import network, training

    df = load_source(str(demo_dir)).manifest.assign(sha256="", width=64, height=64, split="")
    manifest.write(df, tmp_path / "m.csv")
    df = manifest.read(tmp_path / "m.csv")
    kwargs = dict(stage="stage1", lr=1e-3, patience=5, image_size=32, batch_size=16, augment=False, seed=0)
    keras.utils.set_random_seed(0)
    first = training.fit(
        network.build_classifier(32, "none", 0.5), df, df, epochs=2,
        callbacks=[checkpoint.EpochCheckpoint(tmp_path / "ckpt")], **kwargs,
    )  # fmt: skip
    saver = checkpoint.EpochCheckpoint(tmp_path / "ckpt2", resume_from=tmp_path / "ckpt")
    result = training.fit(
        network.build_classifier(32, "none", 0.5), df, df, epochs=3, callbacks=[saver], **kwargs
    )
    assert first.epochs_run == 2 and result.epochs_run == 3
    assert result.history["val_auc"][:2] == first.history["val_auc"]
