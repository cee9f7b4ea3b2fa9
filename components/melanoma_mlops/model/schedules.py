"""Stage 1, Stage 2 and single-stage fine-tuning as three schedules over one training helper.

A schedule says where the model starts (a new classifier, or the previous stage's model), which
layers train, and the learning rate and epoch budget. Everything else - the network, the input
pipeline, early stopping on validation AUC, precision and XLA - is shared, so the ablation's
two-stage vs single-stage difference measures the schedule alone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import pandas as pd
import tensorflow as tf

from melanoma_mlops.artifacts import MODEL_FILE
from melanoma_mlops.config import ConfigGroup, TrainingConfig
from melanoma_mlops.model import dataset, distribute, network, precision, shards, training
from melanoma_mlops.model.training import StageResult

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Schedule:
    """One training stage: what trains, how fast, for how long."""

    name: str
    lr: float
    epochs: int
    patience: int
    #: True: only the head trains (base frozen); False: every layer (BatchNorm per bn_inference).
    head_only: bool
    bn_inference: bool
    #: Continue from the previous stage's model instead of building a new classifier.
    from_previous: bool

    @property
    def note(self) -> str:
        if self.head_only:
            return "head only"
        return f"all layers, bn_inference={self.bn_inference}" + ("" if self.from_previous else ", 1 stage")


def stage1(cfg: TrainingConfig) -> Schedule:
    """Head only on a frozen ResNet50 (the protocol's Stage 1)."""
    return Schedule("stage1", cfg.stage1_lr, cfg.stage1_epochs, cfg.patience, True, cfg.bn_inference, False)


def stage2(cfg: TrainingConfig) -> Schedule:
    """Every layer of the Stage 1 model at a low learning rate (the protocol's Stage 2)."""
    return Schedule("stage2", cfg.stage2_lr, cfg.stage2_epochs, cfg.patience, False, cfg.bn_inference, True)


def single_stage(cfg: TrainingConfig, lr: float, epochs: int) -> Schedule:
    """The ablation's baseline: every layer trainable from the first epoch."""
    return Schedule("single_stage", lr, epochs, cfg.patience, False, cfg.bn_inference, False)


def run_params(cfg: TrainingConfig, seed: int, *extra: ConfigGroup) -> dict[str, object]:
    """A stage run's params: every training setting (and the seed, and any other group it reads)."""
    return {**cfg.as_params(), "seed": seed, **{k: v for g in extra for k, v in g.as_params().items()}}


def prepare_model(
    schedule: Schedule, cfg: TrainingConfig, previous_model_dir: str | None = None
) -> keras.Model:
    """The model a schedule starts from, with the right layers trainable."""
    if schedule.from_previous:
        if not previous_model_dir:
            raise ValueError(f"{schedule.name} continues from the previous stage's model: pass its folder")
        clf = network.load(Path(previous_model_dir) / MODEL_FILE)
    else:
        clf = network.build_classifier(cfg.image_size, cfg.weights, cfg.dropout)
    if not schedule.head_only:
        network.unfreeze(clf, bn_inference=schedule.bn_inference)
    return clf


@dataclass(frozen=True)
class Setup:
    """How a stage trained on this machine (logged as ``<stage>_<field>`` MLflow params)."""

    dtype_policy: str
    deterministic: bool
    xla: bool
    replicas: int
    global_batch: int
    lr_effective: float
    lr_rule: str
    image_store: str

    def params(self, stage: str) -> dict[str, object]:
        return {f"{stage}_{k}": v for k, v in asdict(self).items() if k != "lr_rule"} | {
            "lr_rule": self.lr_rule
        }


def run(
    schedule: Schedule,
    cfg: TrainingConfig,
    train: pd.DataFrame,
    val: pd.DataFrame,
    model_dir: str,
    *,
    seed: int,
    previous_model_dir: str | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    data_key: str = "",
    strategy: tf.distribute.Strategy | None = None,
) -> tuple[StageResult, Setup]:
    """Build or load, train and save one schedule; return (result, how it trained).

    ``data_key`` names the data set for the image shards (its fingerprint); ``strategy`` defaults to
    MirroredStrategy over every visible GPU when there are several (:mod:`.distribute`).
    """
    keras.utils.set_random_seed(seed)
    deterministic = precision.set_determinism(cfg.deterministic)
    policy = precision.set_precision(cfg.mixed_precision)
    strategy = strategy or distribute.strategy()
    replicas = strategy.num_replicas_in_sync
    store = _image_store(schedule, cfg, [train, val], data_key)
    with strategy.scope():
        clf = prepare_model(schedule, cfg, previous_model_dir)
    trainable = training.trainable_parameters(clf)
    logger.info("%s: %d trainable parameters (%s)", schedule.name, trainable, schedule.note)
    setup = _setup(schedule, cfg, policy=policy, deterministic=deterministic, replicas=replicas, store=store)
    logger.info("%s: %s", schedule.name, setup)
    result = training.fit(
        clf,
        train,
        val,
        stage=schedule.name,
        lr=setup.lr_effective,
        epochs=schedule.epochs,
        patience=schedule.patience,
        image_size=cfg.image_size,
        batch_size=setup.global_batch,
        augment=cfg.augment,
        seed=seed,
        jit_compile=setup.xla,
        callbacks=callbacks,
        store=store,
        strategy=strategy,
    )
    result.trainable_params = trainable
    training.save(clf, result, model_dir)
    return result, setup


def _image_store(
    schedule: Schedule, cfg: TrainingConfig, frames: list[pd.DataFrame], data_key: str
) -> dataset.ImageStore | None:
    """The decoded images the stage trains on (shards or memory, per ``cfg.image_cache``); None for
    a stage of 0 epochs, which decodes nothing."""
    if not schedule.epochs:
        return None
    return shards.for_training(
        frames, cfg.image_size, image_cache=cfg.image_cache, shard_root=cfg.shard_root, data_key=data_key
    )


def _setup(
    schedule: Schedule,
    cfg: TrainingConfig,
    *,
    policy: str,
    deterministic: bool,
    replicas: int,
    store: dataset.ImageStore | None,
) -> Setup:
    """How the stage trains on this machine: the global batch and the learning rate scale with the
    replicas (:data:`.distribute.LR_RULE`)."""
    return Setup(
        dtype_policy=policy,
        deterministic=deterministic,
        xla=precision.switch(cfg.xla),
        replicas=replicas,
        global_batch=cfg.batch_size * replicas,
        lr_effective=distribute.scaled_lr(schedule.lr, replicas),
        lr_rule=distribute.LR_RULE,
        image_store=store.kind if store is not None else "none",
    )
