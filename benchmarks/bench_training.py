"""Training throughput of Stage 1 (head only) and Stage 2 (all layers): XLA and mixed precision.

On a GPU, mixed precision and XLA are on by default (``--mixed-precision auto --xla auto``);
this prints what each is worth on the machine it runs on.
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np
from _common import best_of

from melanoma_mlops.model import network as model
from melanoma_mlops.model import precision, training


def throughput(stage: str, size: int, batch: int, steps: int, xla: bool, policy: str) -> float:
    keras.mixed_precision.set_global_policy(policy)
    clf = model.build_classifier(size, "none", 0.5)
    if stage == "stage2":
        model.unfreeze(clf, bn_inference=True)
    training.compile_model(clf, 1e-4, jit_compile=xla)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    y = rng.integers(0, 2, (batch, 1)).astype("float32")
    clf.train_on_batch(x, y)  # compile / trace

    def run() -> None:
        for _ in range(steps):
            clf.train_on_batch(x, y)

    seconds = best_of(run, repeats=2)
    keras.mixed_precision.set_global_policy("float32")
    return steps * batch / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument(
        "--mixed", action="store_true", help="also measure mixed_float16 (slow without a GPU)"
    )
    args = parser.parse_args()
    gpu = precision.gpu_present()
    print(f"{args.size}px, batch {args.batch}, {'GPU' if gpu else 'CPU only'}; images/s (higher is better)")
    start = time.perf_counter()
    for stage in ("stage1", "stage2"):
        base = throughput(stage, args.size, args.batch, args.steps, False, "float32")
        xla = throughput(stage, args.size, args.batch, args.steps, True, "float32")
        line = f"  {stage}: float32 {base:7.1f} | +XLA {xla:7.1f} (x{xla / base:.2f})"
        if args.mixed:
            mixed = throughput(stage, args.size, args.batch, args.steps, True, "mixed_float16")
            line += f" | +XLA+mixed {mixed:7.1f} (x{mixed / base:.2f})"
        print(line)
    print(f"  ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
