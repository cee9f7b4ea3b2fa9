"""A tiny but real model registry for the promotion, serving and app tests.

Training ResNet50 even at 32 px writes ~95 MB per registered version and takes most of a minute
on two cores, so these tests use a stand-in with the *same interface*: the project's
``ResNetPreprocess`` layer, a small convolutional base named ``resnet50`` (what Grad-CAM splits
at), then ``gap`` -> ``dropout`` -> ``malignancy``. Everything after training is the real code path:
``evaluate.evaluate`` freezes the threshold on validation, ``register.register_step`` logs the
``serving.pyfunc.MelanomaClassifier`` pyfunc and registers a version, ``steps.promote.gate_step`` decides.
The full ResNet50 path is exercised by the pipeline's own end-to-end test.

Data: 32x32 noisy "skin" with a dark (malignant) or light (benign) disc; separable enough for a
few epochs, noisy enough that no two images are alike.

tests/ has no ``__init__.py``, so pytest puts tests/ on ``sys.path`` and test modules import this
as ``import registry_helpers``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
from keras import layers
from PIL import Image

SIZE = 32
SPLIT_SIZES = {"train": 20, "val": 10, "test": 12}  # images per class
MODEL_FILE = "model.keras"
# Gate thresholds the tests use: lower than production because the test set has 24 images (12 per
# class); the limits apply to the lower bounds of 95% intervals.
GATE_DEFAULTS: dict[str, Any] = {
    "min_auc": 0.70,
    "min_sensitivity": 0.50,
    "min_specificity": 0.20,
    "max_auc_drop": 0.02,
    "min_test_positives": 10,
    "min_test_negatives": 10,
    "auto_promote": True,
    "image_size": SIZE,
    "batch_size": 16,
}


def lesion(rng: np.random.Generator, malignant: bool, size: int = SIZE) -> np.ndarray:
    """One uint8 RGB image: noisy skin-coloured background with a dark or light disc."""
    skin = np.array([205.0, 160.0, 140.0])
    img = np.broadcast_to(skin, (size, size, 3)) + rng.normal(0, 28, (size, size, 3))
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(size * 0.35, size * 0.65, 2)
    radius = rng.uniform(size * 0.18, size * 0.3)
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    colour = np.array([70.0, 45.0, 35.0]) if malignant else np.array([175.0, 130.0, 110.0])
    img[disc] = colour + rng.normal(0, 28, (int(disc.sum()), 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG header that declares ``width`` x ``height`` pixels, with no pixel data behind it.

    This is what a decompression bomb looks like to a header check, at a few dozen bytes.
    """

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def write_dataset(root: Path, seed: int = 0) -> dict[str, Path]:
    """PNG files and train/val/test manifests (the project's manifest columns) under ``root``."""
    rng = np.random.default_rng(seed)
    paths = {}
    for split, n in SPLIT_SIZES.items():
        rows = []
        for label in (0, 1):
            for i in range(n):
                data = png_bytes(lesion(rng, bool(label)))
                path = root / "images" / split / f"{'mb'[label]}_{i:03d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                rows.append(
                    {
                        "image_uri": str(path),
                        "label": label,
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "width": SIZE,
                        "height": SIZE,
                        "group_id": "",
                        "split": split,
                    }
                )
        paths[split] = root / f"{split}.csv"
        pd.DataFrame(rows).to_csv(paths[split], index=False)
    return paths


def build_tiny(size: int = SIZE) -> keras.Model:
    """The stand-in classifier: the production layer names around a small convolutional base."""
    from melanoma_mlops.model.network import BASE_NAME, ResNetPreprocess

    base_in = keras.Input((size, size, 3))
    # ResNet50's caffe preprocessing leaves values in about [-124, 152]: scaled down, the tiny
    # network's scores stay graded instead of saturating at 0 and 1.
    x = layers.Rescaling(1 / 64.0)(base_in)
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    base = keras.Model(base_in, x, name=BASE_NAME)
    inputs = keras.Input((size, size, 3), name="image")
    y = ResNetPreprocess(name="preprocess")(inputs)
    y = base(y)
    y = layers.GlobalAveragePooling2D(name="gap")(y)
    y = layers.Dropout(0.1, name="dropout")(y)
    outputs = layers.Dense(1, activation="sigmoid", name="malignancy", dtype="float32")(y)
    return keras.Model(inputs, outputs, name="melanoma_tiny")


def train_tiny(train: pd.DataFrame, val: pd.DataFrame, epochs: int = 6, seed: int = 0) -> keras.Model:
    from melanoma_mlops.model import dataset, training

    keras.utils.set_random_seed(seed)
    clf = build_tiny()
    training.compile_model(clf, lr=3e-3, jit_compile=False)
    clf.fit(
        dataset.make_dataset(train, SIZE, 16, training=True, seed=seed),
        validation_data=dataset.make_dataset(val, SIZE, 16),
        epochs=epochs,
        verbose=0,
    )
    return clf


def clone(clf: keras.Model) -> keras.Model:
    copy = keras.models.clone_model(clf)
    copy.set_weights(clf.get_weights())
    return copy


def negate_head(clf: keras.Model) -> keras.Model:
    """A deliberately inverted model: every score s becomes 1 - s, so AUC becomes 1 - AUC."""
    bad = clone(clf)
    head = bad.get_layer("malignancy")
    kernel, bias = head.get_weights()
    head.set_weights([-kernel, -bias])
    return bad


@dataclass
class Variant:
    """One trained model on disk and its evaluation (threshold frozen on validation)."""

    name: str
    model_dir: Path
    eval_dir: Path
    evaluation: dict[str, Any]

    @property
    def auc(self) -> float:
        return float(self.evaluation["test"]["auc_roc"])


@dataclass
class Prepared:
    root: Path
    manifests: dict[str, Path]
    variants: dict[str, Variant] = field(default_factory=dict)


def _save_and_evaluate(prep: Prepared, name: str, clf: keras.Model) -> Variant:
    from melanoma_mlops.data import manifest
    from melanoma_mlops.evaluation import evaluate

    model_dir = prep.root / "models" / name
    model_dir.mkdir(parents=True, exist_ok=True)
    clf.save(model_dir / MODEL_FILE)
    eval_dir = prep.root / "evaluations" / name
    result = evaluate.evaluate(
        clf,
        manifest.read(prep.manifests["val"]),
        manifest.read(prep.manifests["test"]),
        eval_dir,
        image_size=SIZE,
        batch_size=16,
        threshold_rule="sensitivity",
        target_sensitivity=0.9,
        fixed_threshold=0.5,
        seed=0,
        n_boot=50,
    )
    variant = Variant(name, model_dir, eval_dir, result)
    prep.variants[name] = variant
    return variant


def prepare(root: Path, variants: tuple[str, ...] = ("good",)) -> Prepared:
    """Data plus the requested variants: ``good`` (trained) and ``bad`` (the same model with its
    head negated, so every score s becomes 1 - s and the test AUC 1 - AUC).

    A scenario that needs the bad model to pass the absolute limits (to isolate the comparison
    with the champion) lowers them with ``min_auc=0.0, min_sensitivity=0.0``.
    """
    from melanoma_mlops.data import manifest

    root.mkdir(parents=True, exist_ok=True)
    prep = Prepared(root, write_dataset(root))
    train, val = manifest.read(prep.manifests["train"]), manifest.read(prep.manifests["val"])
    good_clf = train_tiny(train, val)
    good = _save_and_evaluate(prep, "good", good_clf)
    if good.auc < 0.9:
        raise AssertionError(f"the tiny model did not learn the synthetic task (test AUC {good.auc:.3f})")
    if "bad" in variants:
        _save_and_evaluate(prep, "bad", negate_head(good_clf))
    return prep


def use_store(root: Path) -> str:
    """Point MLflow (and the project's tracking helpers) at a SQLite store under ``root``."""
    import mlflow

    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    (root / "mlruns").mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    return uri


def register(prep: Prepared, variant: str, model_name: str) -> tuple[str, str]:
    """Register ``variant`` through the real register step; return (version, parent run id)."""
    from mlflow.tracking import MlflowClient

    from melanoma_mlops import tracking
    from melanoma_mlops.steps import register as register_mod

    parent = tracking.start_pipeline_run(f"test-{model_name}-{variant}")
    client = MlflowClient()
    for key, value in {"image_size": SIZE, "batch_size": 16, "data": str(prep.root)}.items():
        client.log_param(parent, key, value)
    client.set_tag(parent, "data.fingerprint", f"synthetic-{variant}")
    v = prep.variants[variant]
    version = register_mod.register_step(
        str(v.model_dir),
        str(v.eval_dir),
        str(prep.root / "no-gradcam"),
        str(prep.manifests["train"]),
        str(prep.manifests["val"]),
        str(prep.manifests["test"]),
        parent_run_id=parent,
        model_name=model_name,
    )
    return version, parent


def gate(
    prep: Prepared, variant: str, model_name: str, version: str, parent: str, **overrides: Any
) -> dict[str, Any]:
    from melanoma_mlops.config import GateConfig, TrainingConfig
    from melanoma_mlops.steps.promote import gate_step

    params = {**GATE_DEFAULTS, **overrides}
    sizes = {k: params.pop(k) for k in ("image_size", "batch_size")}
    return gate_step(
        str(prep.variants[variant].eval_dir),
        str(prep.manifests["test"]),
        parent_run_id=parent,
        candidate_version=version,
        gate=GateConfig(model_name=model_name, **params),
        training=TrainingConfig(**sizes),
    )


def register_and_gate(prep: Prepared, variant: str, model_name: str, **overrides: Any) -> dict[str, Any]:
    version, parent = register(prep, variant, model_name)
    return gate(prep, variant, model_name, version, parent, **overrides)


def store_with_champion(root: Path, model_name: str) -> Prepared:
    """A store under ``root`` whose ``model_name`` has one version, gated and aliased champion."""
    use_store(root)
    prep = prepare(root)
    decision = register_and_gate(prep, "good", model_name)
    if not decision["promoted"]:
        raise AssertionError(f"the good model was not promoted: {json.dumps(decision, default=str)}")
    return prep


# ---------------------------------------------------------------------------------------------
# background servers (mlflow models serve, streamlit run) for the integration tests
# ---------------------------------------------------------------------------------------------


def venv_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment with the venv's bin/ first on PATH (``mlflow models serve`` execs
    ``uvicorn`` by name) and no proxy for loopback traffic."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


@contextlib.contextmanager
def background(
    cmd: list[str], log: Path, env: dict[str, str], ready_url: str, timeout_s: float
) -> Iterator[str]:
    """Start ``cmd`` in its own process group, wait until ``ready_url`` answers, always stop it.

    The whole group is signalled because both servers fork workers; nothing else is touched.
    """
    from servers import ServerStartError, wait_http

    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        try:
            try:
                wait_http(ready_url, timeout_s, proc, log)
            except ServerStartError as exc:
                raise AssertionError(f"{cmd[0]} did not start: {exc}") from exc
            yield ready_url
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=15)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # workers left behind by a parent that exited


def registry_cli(argv: list[str]) -> int:
    """``melanoma-mlops predict|promote`` under the same error handling as ``cli.main``.

    Built on its own parser so these tests do not depend on cli.py having wired the commands in.
    """
    import argparse

    from melanoma_mlops.errors import MelanomaError
    from melanoma_pipelines.cli import registry as cli_registry

    parser = argparse.ArgumentParser(prog="melanoma-mlops")
    cli_registry.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MelanomaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
