"""Training on several GPUs: ``tf.distribute.MirroredStrategy`` over every visible GPU.

With more than one GPU visible (a node with ``--gpus N``), each training step runs on every GPU
with one replica of the model, gradients are summed across them (NCCL all-reduce) and every
replica applies the same update. ``--batch-size`` is the batch of *one* device, so the global batch
is ``batch_size x replicas``, and the learning rate follows the **linear scaling rule** (Goyal et
al. 2017, "Accurate, Large Minibatch SGD"): ``lr x replicas``, so the update per image seen stays
what the single-device protocol prescribes. The effective values are logged per stage
(``<stage>_replicas``, ``<stage>_global_batch``, ``<stage>_lr_effective``, ``lr_rule``).

BatchNorm is unaffected: Stage 1 freezes the base and Stage 2 keeps BatchNorm in inference mode
(``--bn-inference``), so no batch statistics depend on the per-replica batch size.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import tensorflow as tf

logger = logging.getLogger(__name__)

LR_RULE = "linear"


def strategy(devices: Sequence[str] | None = None) -> tf.distribute.Strategy:
    """MirroredStrategy over ``devices`` (default: every visible GPU) when there are several, else
    TensorFlow's default strategy (one device: the GPU, or the CPU)."""
    if devices is None:
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    if len(devices) > 1:
        logger.info("training on %d devices with MirroredStrategy: %s", len(devices), ", ".join(devices))
        return tf.distribute.MirroredStrategy(list(devices))
    return tf.distribute.get_strategy()


def scaled_lr(lr: float, replicas: int) -> float:
    """The learning rate for ``replicas`` devices under the linear scaling rule."""
    return lr * replicas
