"""Training throughput of Stage 1 (head only) and Stage 2 (all layers) in float32, mixed bfloat16 and
mixed float16, interleaved in one run; what ``--mixed-precision auto`` picks on this machine;
Stage 2's first epoch against its steady epochs at the demo's size, as the pipeline step runs it
(``first_epoch.py``; ``--first-epoch-repeats 0`` skips it); and (``--accuracy-seeds N``) whether
bfloat16 training reaches float32's validation AUC within the seed-to-seed spread.

On a CPU with avx512_bf16/amx_bf16, ``auto`` picks mixed_bfloat16; float16 has no fast CPU kernels.
``--xla`` adds XLA-compiled variants (on by default on a GPU: ``--xla auto``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import _common
import keras
import numpy as np

from melanoma_mlops.model import augment, network, precision, training

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


def make(stage: str, size: int, policy: str, xla: bool) -> keras.Model:
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    clf = network.build_classifier(size, "none", 0.5)
    if stage == "stage2":
        network.unfreeze(clf, bn_inference=True)
    trainer = augment.training_model(clf, augment=False, seed=0)  # what fit trains (BatchNorm folded)
    training.compile_model(trainer, 1e-4, jit_compile=xla)
    keras.mixed_precision.set_global_policy("float32")
    return trainer


def throughput(stage: str, size: int, batch: int, steps: int, repeats: int, variants: list[tuple[str, bool]]):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, size, size, 3)).astype("uint8")
    y = rng.integers(0, 2, (batch, 1)).astype("float32")
    models = {v: make(stage, size, *v) for v in variants}
    for clf in models.values():
        clf.train_on_batch(x, y)  # trace / compile
    times: dict[tuple[str, bool], list[float]] = {v: [] for v in variants}
    for _ in range(repeats):  # interleaved: background load hits every variant alike
        for v, clf in models.items():
            start = time.perf_counter()
            for _ in range(steps):
                clf.train_on_batch(x, y)
            times[v].append(time.perf_counter() - start)
    return {v: steps * batch / statistics.median(t) for v, t in times.items()}


def accuracy(seeds: int, epochs: tuple[int, int]) -> dict[str, list[float]]:
    """Best Stage 2 validation AUC per seed on the demo set, float32 vs bfloat16."""
    import pandas as pd

    from melanoma_mlops.config import TrainingConfig
    from melanoma_mlops.data import demo, oversample, split
    from melanoma_mlops.model import schedules

    out: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    with tempfile.TemporaryDirectory() as tmp:
        demo.generate(Path(tmp) / "d", n=300, size=64, seed=0)
        paths = sorted((Path(tmp) / "d").glob("*/*.png"))
        df = pd.DataFrame({"image_uri": [str(p) for p in paths], "group_id": [p.stem for p in paths]})
        df["label"] = [int(p.parent.name == "malignant") for p in paths]
        parts = split.split_manifest(df, 0.2, 0.05, seed=0)
        train = oversample.oversample_train(parts[parts["split"] == "train"], seed=0)
        val = parts[parts["split"] == "val"]
        for seed in range(seeds):
            for dtype, aucs in out.items():
                cfg = TrainingConfig(
                    image_size=48, batch_size=32, weights="none", stage1_epochs=epochs[0],
                    stage2_epochs=epochs[1], stage2_lr=1e-4, patience=epochs[0],
                    mixed_precision="off" if dtype == "float32" else dtype,
                    deterministic="on",
                )  # fmt: skip
                s1 = str(Path(tmp) / f"{dtype}{seed}s1")
                schedules.run(schedules.stage1(cfg), cfg, train, val, s1, seed=seed)
                r2, _ = schedules.run(
                    schedules.stage2(cfg), cfg, train, val, s1 + "2", seed=seed, previous_model_dir=s1
                )
                aucs.append(r2.best_val_auc)
    keras.mixed_precision.set_global_policy("float32")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="training steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timed repeats per variant")
    parser.add_argument("--xla", action="store_true", help="also XLA-compiled variants")
    parser.add_argument("--no-float16", action="store_true", help="skip mixed_float16 (slow without a GPU)")
    parser.add_argument("--skip-throughput", action="store_true", help="only the --accuracy-seeds check")
    parser.add_argument(
        "--accuracy-seeds", type=int, default=0, help="seeds of the bf16-vs-float32 AUC check"
    )
    parser.add_argument(
        "--first-epoch-repeats", type=int, default=3, help="Stage 2 steps timed at the demo's size (0: skip)"
    )
    args = parser.parse_args()
    gpu = precision.gpu_present()
    picked = precision.POLICIES[precision.resolve_dtype("auto")]
    flags = sorted(precision.cpu_flags() & precision.BF16_CPU_FLAGS)
    device = f"GPU {precision.gpu_capabilities()}" if gpu else "CPU only"
    print(
        f"{args.size}px, batch {args.batch}, {device}; CPU bf16 flags: {flags or 'none'}; "
        f"--mixed-precision auto picks {picked}"
    )
    policies = [p for p in POLICIES if not (args.no_float16 and p == "mixed_float16")]
    variants = [(p, False) for p in policies] + ([(p, True) for p in policies] if args.xla else [])
    start = time.perf_counter()
    for stage in () if args.skip_throughput else ("stage1", "stage2"):
        rates = throughput(stage, args.size, args.batch, args.steps, args.repeats, variants)
        base = rates[("float32", False)]
        cells = [
            f"{p.removeprefix('mixed_')}{'+XLA' if x else ''} {r:6.1f} (x{r / base:.2f})"
            for (p, x), r in rates.items()
        ]
        print(f"  {stage} images/s: " + " | ".join(cells))
    if not args.skip_throughput:
        print(f"  ({time.perf_counter() - start:.0f} s, median of {args.repeats} interleaved repeats)")
    if args.first_epoch_repeats:
        import first_epoch

        from melanoma_mlops.config import DEMO_IMAGES, DEMO_PRESET

        print(
            f"Stage 2 at the demo's size ({DEMO_IMAGES} images, {DEMO_PRESET['image_size']} px, batch "
            f"{DEMO_PRESET['batch_size']}, {DEMO_PRESET['stage2_epochs']} epochs), each step a new process:"
        )
        with tempfile.TemporaryDirectory() as tmp:
            print("\n".join(first_epoch.report(first_epoch.measure(Path(tmp), args.first_epoch_repeats))))
    if args.accuracy_seeds:
        aucs = accuracy(args.accuracy_seeds, (4, 2))
        for dtype, values in aucs.items():
            listed = ", ".join(f"{v:.4f}" for v in values)
            print(
                f"  best Stage 2 val AUC, {dtype:8s}: mean {np.mean(values):.4f} "
                f"sd {np.std(values, ddof=1):.4f} ({listed})"
            )
        diff = np.mean(aucs["bfloat16"]) - np.mean(aucs["float32"])
        spread = max(np.std(aucs["float32"], ddof=1), np.std(aucs["bfloat16"], ddof=1))
        verdict = "within" if abs(diff) <= spread else "OUTSIDE"
        print(f"  bfloat16 - float32: {diff:+.4f} (seed-to-seed sd {spread:.4f}: {verdict})")
    print(f"(peak RSS {_common.peak_rss_mib():.0f} MiB)")


if __name__ == "__main__":
    main()
