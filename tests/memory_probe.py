"""The memory probe of issue 11, shared by its two halves: tests/integration/test_memory_limits.py
(`mlflow models serve`) and tests/browser/test_memory_limits_app.py (the app in Chromium).

A registry whose champion is the project's ResNet50 classifier at 224 px (untrained: memory, not
accuracy, is under test), the images of the attacks, and the report of a server's memory.

tests/ has no ``__init__.py``, so test modules import this as ``import memory_probe``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import memory_cgroup
import numpy as np
import pytest
import registry_helpers as rh
from docker_env import in_ci
from PIL import Image

GIB = 2**30
POD_LIMIT = 3 * GIB
MODEL = "memory-probe"
SIZE = 224
START_TIMEOUT_S = 300
#: Both halves skip where no memory cgroup can be made, saying why.
NEEDS_A_MEMORY_CGROUP = pytest.mark.skipif(
    bool(memory_cgroup.available()) and not in_ci(), reason=memory_cgroup.available() or "-"
)


def flat_png(path: Path, megapixels: float) -> Path:
    """A square PNG of ``megapixels`` that compresses to almost nothing (a decompression bomb)."""
    side = int((megapixels * 1e6) ** 0.5)
    Image.new("RGB", (side, side), (200, 150, 140)).save(path, compress_level=9)
    return path


@contextlib.contextmanager
def champion_store(root: Path) -> Iterator[tuple[Path, str]]:
    """A registry whose champion is the project's ResNet50 classifier at 224 px."""
    import keras
    from mlflow.tracking import MlflowClient

    from melanoma_mlops import tracking
    from melanoma_mlops.data import manifest
    from melanoma_mlops.evaluation import evaluate
    from melanoma_mlops.model import network
    from melanoma_mlops.steps.register import register_step

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", "")
        uri = rh.use_store(root)
        paths = rh.write_dataset(root)
        keras.utils.set_random_seed(0)
        clf = network.build_classifier(SIZE, "none", 0.5)
        model_dir, eval_dir = root / "model", root / "evaluation"
        model_dir.mkdir()
        clf.save(model_dir / rh.MODEL_FILE)
        evaluate.evaluate(
            clf,
            manifest.read(paths["val"]),
            manifest.read(paths["test"]),
            eval_dir,
            image_size=SIZE,
            batch_size=8,
            threshold_rule="sensitivity",
            target_sensitivity=0.9,
            fixed_threshold=0.5,
            seed=0,
            n_boot=20,
        )
        parent = tracking.start_pipeline_run("memory-probe")
        client = MlflowClient()
        for key, value in {"image_size": SIZE, "batch_size": 8, "data": str(root)}.items():
            client.log_param(parent, key, value)
        version = register_step(
            str(model_dir),
            str(eval_dir),
            str(root / "no-gradcam"),
            *(str(paths[s]) for s in ("train", "val", "test")),
            parent_run_id=parent,
            model_name=MODEL,
        )
        client.set_registered_model_alias(MODEL, "champion", version)
        yield root, uri


def attack_images(folder: Path) -> dict[str, Path]:
    return {
        "99mp": flat_png(folder / "bomb99.png", 99),
        "45mp": flat_png(folder / "big45.png", 45),
        "24mp": flat_png(folder / "dermatoscope24.png", 24),
        "ok": Path(write(folder / "lesion.png", rh.png_bytes(rh.lesion(np.random.default_rng(0), True, 64)))),
    }


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def report(name: str, group: memory_cgroup.MemoryCgroup, baseline: int, lines: list[str]) -> None:
    print(
        f"\n{name} in a {POD_LIMIT / GIB:.0f} GiB cgroup: idle {baseline / GIB:.2f} GiB, "
        f"peak {group.peak_bytes() / GIB:.2f} GiB, OOM kills {group.oom_kills()}"
    )
    for line in lines:
        print(f"  {line}")
