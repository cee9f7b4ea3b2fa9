"""Stage 1 (head only, base frozen) and Stage 2 (every layer, lr 1e-5) of the protocol."""

from __future__ import annotations

import logging
from pathlib import Path

import keras

from . import model, tracking, training
from .training import StageResult

logger = logging.getLogger(__name__)


def stage1(
    train_manifest: str,
    val_manifest: str,
    model_dir: str,
    *,
    parent_run_id: str,
    image_size: int,
    batch_size: int,
    weights: str,
    dropout: float,
    augment: bool,
    lr: float,
    epochs: int,
    patience: int,
    seed: int,
    mixed_precision: str = "auto",
    xla: str = "auto",
) -> StageResult:
    """Train only the classification head on a frozen ResNet50; save the model to ``model_dir``."""
    params = {
        "image_size": image_size,
        "batch_size": batch_size,
        "weights": weights,
        "dropout": dropout,
        "augment": augment,
        "stage1_lr": lr,
        "stage1_epochs": epochs,
        "patience": patience,
        "seed": seed,
        "mixed_precision": mixed_precision,
        "xla": xla,
    }
    with tracking.step_run(parent_run_id, "stage1", params):
        keras.utils.set_random_seed(seed)
        policy = training.set_precision(mixed_precision)
        tracking.log_params({"stage1_dtype_policy": policy})
        clf = model.build_classifier(image_size, weights, dropout)
        return training.train_and_save(
            clf, train_manifest, val_manifest, model_dir, stage="stage1", note="head only",
            lr=lr, epochs=epochs, patience=patience, image_size=image_size, batch_size=batch_size,
            augment=augment, seed=seed, parent_run_id=parent_run_id, xla=xla,
        )  # fmt: skip


def stage2(
    stage1_model_dir: str,
    train_manifest: str,
    val_manifest: str,
    model_dir: str,
    *,
    parent_run_id: str,
    image_size: int,
    batch_size: int,
    augment: bool,
    lr: float,
    epochs: int,
    patience: int,
    bn_inference: bool,
    seed: int,
    mixed_precision: str = "auto",
    xla: str = "auto",
) -> StageResult:
    """Fine-tune every layer of the Stage 1 model at a low learning rate; best weights restored."""
    params = {
        "stage2_lr": lr,
        "stage2_epochs": epochs,
        "bn_inference": bn_inference,
    }
    with tracking.step_run(parent_run_id, "stage2", params):
        tracking.log_params({"stage2_dtype_policy": training.set_precision(mixed_precision)})
        clf = model.load(Path(stage1_model_dir) / training.MODEL_FILE)
        model.unfreeze(clf, bn_inference=bn_inference)
        return training.train_and_save(
            clf, train_manifest, val_manifest, model_dir, stage="stage2", note=f"bn_inference={bn_inference}",
            lr=lr, epochs=epochs, patience=patience, image_size=image_size, batch_size=batch_size,
            augment=augment, seed=seed, parent_run_id=parent_run_id, xla=xla,
        )  # fmt: skip
