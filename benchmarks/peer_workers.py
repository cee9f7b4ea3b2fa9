"""The two arms of ``bench_peer.py``, each served in a worker process of its own.

A worker sets its environment before TensorFlow is imported (oneDNN is decided at import), then
answers commands: ``runtime`` (what it runs on), ``setup`` (a stage at a precision) and ``epoch``
(one pass over the training images plus validation: wall seconds, images/s, CPU ms per image).
"""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any


def _onednn() -> str:
    from tensorflow.python.util import _pywrap_util_port

    return "on" if _pywrap_util_port.IsMklEnabled() else "off"


class Ours:
    """Our training code as a pipeline step runs it (schedules + training.prepare), minus MLflow."""

    def __init__(self, data: dict[str, Any]) -> None:
        import pandas as pd

        from melanoma_mlops.model import shards

        self.train, self.val = pd.DataFrame(data["train"]), pd.DataFrame(data["val"])
        self.size, self.batch = data["size"], data["batch"]
        start = time.perf_counter()
        self.store = shards.for_training([self.train, self.val], self.size, image_cache="memory")
        self.store_seconds = time.perf_counter() - start
        self.stage1_models: dict[str, str] = {}
        self.folder = Path(tempfile.mkdtemp(dir=data["tmp"]))
        self.fitting: Any = None

    def setup(self, stage: str, precision: str) -> dict[str, Any]:
        from melanoma_mlops.config import TrainingConfig
        from melanoma_mlops.model import precision as prec
        from melanoma_mlops.model import schedules, training

        option = "off" if precision == "float32" else precision
        cfg = TrainingConfig(
            image_size=self.size, batch_size=self.batch, weights="none", mixed_precision=option
        )
        deterministic = prec.set_determinism(cfg.deterministic)
        policy = prec.set_precision(cfg.mixed_precision)
        schedule = schedules.stage1(cfg) if stage == "stage1" else schedules.stage2(cfg)
        previous = self.stage1_models.get(policy) if stage == "stage2" else None
        if stage == "stage2" and previous is None:  # Stage 2 continues from a saved Stage 1 model
            first = schedules.prepare_model(schedules.stage1(cfg), cfg)
            previous = str(self.folder / policy)
            training.save(first, training.StageResult(), previous)
        clf = schedules.prepare_model(schedule, cfg, previous)
        self.fitting = training.prepare(
            clf, self.train, self.val, lr=schedule.lr, image_size=self.size, batch_size=self.batch,
            augment=cfg.augment, seed=0, jit_compile=prec.switch(cfg.xla), store=self.store,
        )  # fmt: skip
        if stage == "stage1":
            training.save(clf, training.StageResult(), self.folder / policy)
            self.stage1_models[policy] = str(self.folder / policy)
        return {"policy": policy, "deterministic": deterministic}

    def epoch(self) -> None:
        f = self.fitting
        f.trainer.fit(f.train_ds, validation_data=f.val_ds, callbacks=f.callbacks, epochs=1, verbose=0)


class Paper:
    """``paper_arm``: decode + augment every epoch, ResNet50 + Dense(1024) head, BatchNorm trainable."""

    def __init__(self, data: dict[str, Any]) -> None:
        import pandas as pd

        self.train, self.val = pd.DataFrame(data["train"]), pd.DataFrame(data["val"])
        self.size, self.batch = data["size"], data["batch"]
        self.model: Any = None
        self.policy = ""

    def setup(self, stage: str, precision: str) -> dict[str, Any]:
        import keras
        import paper_arm

        policy = "float32" if precision == "float32" else f"mixed_{precision}"
        if stage == "stage1" or self.model is None or self.policy != policy:
            keras.mixed_precision.set_global_policy(policy)  # the one-line switch
            keras.utils.set_random_seed(0)
            self.model, self.base = paper_arm.build(self.size)
            self.policy = policy
        paper_arm.compile_stage(self.model, self.base, stage)  # Stage 2 continues from Stage 1
        self.train_ds = paper_arm.dataset(self.train, self.size, self.batch, training=True)
        self.val_ds = paper_arm.dataset(self.val, self.size, self.batch, training=False)
        return {"policy": policy, "deterministic": False}

    def epoch(self) -> None:
        self.model.fit(self.train_ds, validation_data=self.val_ds, epochs=1, verbose=0)


def serve(conn, kind: str, env: dict[str, str | None], data: dict[str, Any]) -> None:
    """The worker's loop: (command, kwargs) in, a dict out (``error`` on failure); None ends it."""
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if kind == "ours":
        import melanoma_mlops  # noqa: F401 - the package's environment defaults, as in a pipeline step
    arm = Ours(data) if kind == "ours" else Paper(data)
    n = len(data["train"]["image_uri"])
    while (message := conn.recv()) is not None:
        command, kwargs = message
        try:
            if command == "runtime":
                answer = {"onednn": _onednn(), "onednn_env": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
                          "store_seconds": getattr(arm, "store_seconds", 0.0)}  # fmt: skip
            elif command == "setup":
                answer = arm.setup(**kwargs)
            else:
                wall, cpu = time.perf_counter(), time.process_time()
                arm.epoch()
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                answer = {"wall": wall, "rate": n / wall, "cpu_ms": 1000 * cpu / n}
        except Exception:  # noqa: BLE001 - reported to the parent, which raises it
            answer = {"error": traceback.format_exc()}
        conn.send(answer)
