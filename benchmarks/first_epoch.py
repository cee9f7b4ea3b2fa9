"""Stage 2's first epoch against its steady epochs at the demo's size, as the pipeline step runs it.

The real step functions on the default demo set (``melanoma-mlops run``'s: ``DEMO_IMAGES`` generated
images, ``DEMO_PRESET``: 64 px, batch 32, 4 Stage 2 epochs): validate, split, oversample and a
one-epoch Stage 1 once, then ``stage2_step`` (with its checkpoint and MLflow callbacks) in a new
process per repeat, as each pipeline step is. Epochs are timed as the console shows them: from the
step's "N train images" line to each epoch's line (which follows the checkpoint and the MLflow
logging). What the step spends outside its epochs (loading and unfreezing the Stage 1 model,
decoding the images, saving) is printed too.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing as mp
import os
import statistics
import time
from pathlib import Path

STAGE_LINE = "train images"


class _Marks(logging.Handler):
    """Times of the step's fit-start line and of each epoch line."""

    def __init__(self) -> None:
        super().__init__()
        self.fit_start = 0.0
        self.epochs: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("stage2:") and STAGE_LINE in message:
            self.fit_start = record.created
        elif message.startswith("stage2 epoch "):
            self.epochs.append(record.created)


def _stage2(paths: dict[str, str], tracking_uri: str, out: mp.Queue) -> None:
    """One Stage 2 step in this (new) process; puts (epoch seconds, step seconds) on ``out``."""
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    from melanoma_mlops import tracking
    from melanoma_mlops.config import DEMO_PRESET, RunConfig
    from melanoma_mlops.steps.train import stage2_step

    marks = _Marks()
    logging.getLogger("melanoma_mlops").addHandler(marks)
    logging.getLogger("melanoma_mlops").setLevel(logging.INFO)
    config = RunConfig.from_params(DEMO_PRESET)
    parent = tracking.start_pipeline_run(f"first-epoch-{time.time_ns()}")
    start = time.time()
    stage2_step(paths["m1"], paths["balanced"], paths["val"], paths["m2"] + parent, parent_run_id=parent,
                cfg=config.training, seed=config.seed)  # fmt: skip
    step = time.time() - start
    ends = [marks.fit_start, *marks.epochs]
    out.put(([b - a for a, b in itertools.pairwise(ends)], step))


def prepare(root: Path) -> dict[str, str]:
    """The demo set, its manifests and a Stage 1 model (one epoch: Stage 2's cost does not depend on it)."""
    from melanoma_mlops import tracking
    from melanoma_mlops.config import DEMO_IMAGES, DEMO_PRESET, RunConfig
    from melanoma_mlops.data import demo
    from melanoma_mlops.steps.oversample import oversample_step
    from melanoma_mlops.steps.split import split_step
    from melanoma_mlops.steps.train import stage1_step
    from melanoma_mlops.steps.validate import validate_step

    config = RunConfig.from_params({**DEMO_PRESET, "stage1_epochs": 1})
    demo.generate(root / "data", n=DEMO_IMAGES)
    p = {k: str(root / k) for k in ("manifest", "docs", "train", "val", "test", "balanced", "m1", "m2")}
    parent = validate_step(str(root / "data"), p["manifest"], p["docs"], str(root / "report.html"),
                           cfg=config.data, run_name="first-epoch")  # fmt: skip
    split_step(p["manifest"], p["train"], p["val"], p["test"], parent_run_id=parent, cfg=config.data, seed=0)
    oversample_step(p["train"], p["val"], p["test"], p["balanced"], parent_run_id=parent, seed=0)
    stage1_step(p["balanced"], p["val"], p["m1"], parent_run_id=parent, cfg=config.training, seed=0)
    tracking.finish_pipeline_run(parent, "FINISHED")
    return p


def measure(root: Path, repeats: int) -> list[tuple[list[float], float]]:
    """(epoch seconds, step seconds) of ``repeats`` Stage 2 steps, each in a new process."""
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    paths = prepare(root)
    ctx = mp.get_context("spawn")
    results = []
    for _ in range(repeats):
        queue = ctx.Queue()
        process = ctx.Process(target=_stage2, args=(paths, tracking_uri, queue))
        process.start()
        results.append(queue.get())
        process.join()
    return results


def report(results: list[tuple[list[float], float]]) -> list[str]:
    lines, ratios = [], []
    for epochs, step in results:
        steady = statistics.median(epochs[1:])
        ratios.append(epochs[0] / steady)
        listed = ", ".join(f"{e:.1f}" for e in epochs)
        lines.append(
            f"  epochs {listed} s; first / steady {epochs[0] / steady:.2f}; outside the epochs "
            f"{step - sum(epochs):.1f} s of the step's {step:.1f} s"
        )
    lines.append(
        f"  Stage 2 first epoch / steady epoch (median of epochs 2+): min {min(ratios):.2f}, median "
        f"{statistics.median(ratios):.2f} over {len(ratios)} steps (target <= 1.5)"
    )
    return lines
