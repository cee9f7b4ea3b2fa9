"""GPU figures: Stage 1 / Stage 2 training throughput at 224 px (float32, mixed precision, XLA), the
input pipeline alone, and a 2-epoch run of the whole pipeline, with GPU utilisation (nvidia-smi).

    .venv/bin/python benchmarks/bench_gpu.py                # on a machine with an NVIDIA GPU
    .venv/bin/python benchmarks/bench_gpu.py --json out.json

Without a GPU visible to TensorFlow it stops with a message (exit status 2). ``--cpu-dry-run`` runs
every part on the CPU at toy sizes, to check the script itself where there is no GPU, with the GPU's
settings: mixed float16 (with Keras' loss scaling) and XLA in the throughput runs, and the pipeline
run trained with ``--mixed-precision float16 --xla on`` (tests/integration/test_speed_gpu_path.py runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _common  # noqa: F401 - the project's environment defaults before TensorFlow, as in a step


class GpuMonitor:
    """Samples ``nvidia-smi`` utilisation and memory while a block runs (mean and max)."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.available = shutil.which("nvidia-smi") is not None

    def _poll(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            for line in out.stdout.strip().splitlines():
                util, mem = (float(v) for v in line.split(","))
                self.samples.append((util, mem))
            self._stop.wait(self.interval)

    def __enter__(self) -> GpuMonitor:
        self.samples.clear()
        self._stop.clear()
        if self.available:
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def summary(self) -> str:
        if not self.samples:
            return "GPU util n/a"
        utils = [u for u, _ in self.samples]
        memory = max(m for _, m in self.samples)
        return f"GPU util mean {statistics.mean(utils):.0f}% max {max(utils):.0f}%, mem max {memory:.0f} MiB"


def stage_throughput(stage: str, size: int, batch: int, steps: int, policy: str, xla: bool, augment: bool):
    import keras
    import numpy as np
    import tensorflow as tf

    from melanoma_mlops.model import augment as aug
    from melanoma_mlops.model import network, training

    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    clf = network.build_classifier(size, "none", 0.5)
    if stage == "stage2":
        network.unfreeze(clf, bn_inference=True)
    model = aug.training_model(clf, augment=augment, seed=0)
    training.compile_model(model, 1e-4, jit_compile=xla)
    keras.mixed_precision.set_global_policy("float32")
    rng = np.random.default_rng(0)
    x = tf.constant(rng.integers(0, 256, (batch, size, size, 3)).astype("uint8"))
    y = tf.constant(rng.integers(0, 2, (batch, 1)).astype("float32"))
    ds = tf.data.Dataset.from_tensors((x, y)).repeat(steps).prefetch(4)
    model.fit(ds.take(3), epochs=1, verbose=0)  # trace / compile
    with GpuMonitor() as mon:
        start = time.perf_counter()
        model.fit(ds, epochs=1, verbose=0)
        seconds = time.perf_counter() - start
    return steps * batch / seconds, mon.summary()


def input_pipeline(n: int, size: int, batch: int, epochs: int):
    import tensorflow as tf
    from bench_input import write_jpegs

    from melanoma_mlops.model import augment, dataset

    with tempfile.TemporaryDirectory() as tmp:
        df = write_jpegs(Path(tmp), n)
        t0 = time.perf_counter()
        store = dataset.MemoryStore.decode([df], size)
        decode = time.perf_counter() - t0
        ds = dataset.from_store(store, df, batch, training=True, seed=0, dtype=tf.uint8)
        layer = augment.Augment(seed=0)
        step = tf.function(lambda v: layer(v, training=True))
        for v, _ in ds:  # trace
            step(v)
        out = {}
        for name, fn in (("store alone", None), ("store + augmentation on the GPU", step)):
            with GpuMonitor() as mon:
                start = time.perf_counter()
                for _ in range(epochs):
                    for v, _ in ds:
                        last = fn(v) if fn is not None else v
                _ = last.numpy().ravel()[:1]
                out[name] = (n * epochs / (time.perf_counter() - start), mon.summary())
    return n / decode, out


def pipeline_run(
    n: int, size: int, batch: int, epochs: int, gpu_settings: dict[str, str] | None = None
) -> tuple[float, dict[str, float], str]:
    """The whole DAG under kfp.local on a generated set: wall time and the stages' images/s."""
    from melanoma_mlops.config import RunConfig
    from melanoma_mlops.data import demo
    from melanoma_pipelines.local import run_local

    with tempfile.TemporaryDirectory() as tmp:
        demo.generate(Path(tmp) / "data", n=n, size=max(size, 256), seed=0)
        config = RunConfig().replace(
            image_size=size, batch_size=batch, weights="none", stage1_epochs=epochs, stage2_epochs=epochs,
            patience=epochs, min_auc=0.0, min_sensitivity=0.0, gradcam_samples=8, **(gpu_settings or {}),
        )  # fmt: skip
        cwd = os.getcwd()
        os.chdir(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlruns.db"
        try:
            with GpuMonitor(interval=1.0) as mon:
                start = time.perf_counter()
                result = run_local(config, str(Path(tmp) / "data"), pipeline_root=Path(tmp) / "outputs")
                wall = time.perf_counter() - start
        finally:
            os.chdir(cwd)
        metrics = getattr(result, "metrics", {}) or {}
        rates = {k: v for k, v in metrics.items() if k.endswith("images_per_second")}
        return wall, rates, mon.summary()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=128, help="batch of the throughput runs")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per throughput run")
    parser.add_argument("--input-images", type=int, default=4000)
    parser.add_argument("--pipeline-images", type=int, default=2000)
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--cpu-dry-run", action="store_true", help="toy sizes on the CPU (checks the script)")
    args = parser.parse_args()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus and not args.cpu_dry_run:
        smi = "nvidia-smi found" if shutil.which("nvidia-smi") else "no nvidia-smi on PATH"
        print(
            f"bench_gpu: no GPU is visible to TensorFlow {tf.__version__} ({smi}). Run it on a machine with "
            "an NVIDIA GPU and the CUDA build of TensorFlow (pip install 'tensorflow[and-cuda]', or the "
            "pipeline image built with TF_PACKAGE='tensorflow[and-cuda]'); --cpu-dry-run checks the script "
            "on a CPU.",
            file=sys.stderr,
        )
        return 2
    if args.cpu_dry_run:
        args.size, args.batch, args.steps, args.input_images, args.pipeline_images = 32, 8, 2, 64, 60
    from melanoma_mlops.model import precision

    # A dry run uses the GPU's mixed policy (float16), not the CPU's (bfloat16): it checks the GPU path.
    mixed = "mixed_float16" if args.cpu_dry_run else precision.POLICIES[precision.resolve_dtype("on")]
    details = [tf.config.experimental.get_device_details(g) for g in gpus]
    print(f"devices: {[d.get('device_name', '?') for d in details] or 'CPU (dry run)'}; TF {tf.__version__}")
    print(f"training throughput, {args.size} px, batch {args.batch}, {args.steps} steps, images/s:")
    figures: dict[str, object] = {"device": details, "size": args.size, "batch": args.batch}
    for stage in ("stage1", "stage2"):
        for policy, xla in (("float32", False), (mixed, False), (mixed, True)):
            for aug in (False, True) if (policy == mixed and xla) else (False,):
                rate, util = stage_throughput(stage, args.size, args.batch, args.steps, policy, xla, aug)
                name = f"{stage} {policy}{' +XLA' if xla else ''}{' +augmentation' if aug else ''}"
                figures[name] = rate
                print(f"  {name:42s} {rate:8.0f}   ({util})")
    decode_rate, rates = input_pipeline(args.input_images, args.size, 256 if not args.cpu_dry_run else 8, 3)
    print(f"input pipeline ({args.input_images} JPEGs 600x450 -> {args.size} px), images/s:")
    print(f"  decode into the store (epoch 1)           {decode_rate:8.0f}")
    for name, (rate, util) in rates.items():
        figures[f"input {name}"] = rate
        print(f"  {name:42s} {rate:8.0f}   ({util})")
    if not args.skip_pipeline:
        gpu_settings = {"mixed_precision": "float16", "xla": "on"} if args.cpu_dry_run else None
        batch = min(args.batch, 64)
        wall, stage_rates, util = pipeline_run(args.pipeline_images, args.size, batch, 2, gpu_settings)
        figures["pipeline wall s"] = wall
        print(f"pipeline, 2 epochs per stage, {args.pipeline_images} images: {wall:.0f} s wall ({util})")
        for k, v in stage_rates.items():
            print(f"  {k}: {v:.0f} images/s")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
