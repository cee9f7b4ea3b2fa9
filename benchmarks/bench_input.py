"""The training input pipeline: ours (decoded-image store + augmentation on the device) vs the paper's.

Measured side by side in one run, interleaved, on the same JPEGs (600x450, resized to 224 px):

* **paper-style**: read + decode + resize + ResNet preprocessing every epoch, then
  ``random_flip_left_right`` / ``random_brightness`` / ``random_saturation`` in the tf.data map;
* **ours**: each unique image decoded once into the store (epoch 1), then index batches gathered
  from it, with the augmentation (flips/rotation/zoom/contrast) applied to every batch by the
  training model's first layer, as ``fit`` does, on the same device (here the CPU);
* ours without augmentation (the input pipeline alone).

Then Stage 1 training end to end (frozen ResNet50, the same classifier and precision) fed by either
pipeline, and the image shards against the in-memory store.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf
from _common import peak_rss_mib
from PIL import Image

from melanoma_mlops.data import demo
from melanoma_mlops.model import augment, dataset, network, precision, shards, training

AUTOTUNE = tf.data.AUTOTUNE


def write_jpegs(folder: Path, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` distinct 600x450 JPEGs (synthetic lesions) and their manifest."""
    squares = folder / "png"
    demo.generate(squares, n=n, size=450, seed=seed)
    rows = []
    for i, path in enumerate(sorted(squares.glob("*/*.png"))):
        out = folder / "jpeg" / f"{i:05d}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as img:
            img.convert("RGB").resize((600, 450), Image.Resampling.BILINEAR).save(out, quality=90)
        rows.append((str(out), int(path.parent.name == "malignant")))
    return pd.DataFrame(rows, columns=["image_uri", "label"])


def paper_style(df: pd.DataFrame, size: int, batch: int, preprocess: bool = True) -> tf.data.Dataset:
    """What the paper's loader does every epoch (decode, resize, preprocess, flip/brightness/saturation)."""

    def load(uri: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.image.resize(tf.io.decode_jpeg(tf.io.read_file(uri), channels=3), (size, size))
        image = tf.image.random_flip_left_right(image)
        image = tf.image.random_brightness(image, 0.1 * 255)
        image = tf.image.random_saturation(image, 0.9, 1.1)
        if preprocess:
            image = tf.keras.applications.resnet50.preprocess_input(image)
        return image, label

    ds = tf.data.Dataset.from_tensor_slices((df["image_uri"].tolist(), df["label"].astype("float32")))
    ds = ds.shuffle(len(df), seed=0, reshuffle_each_iteration=True)
    return ds.map(load, num_parallel_calls=AUTOTUNE).batch(batch).prefetch(AUTOTUNE)


def epoch(ds: tf.data.Dataset, step=None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, every thread) of one pass over ``ds``."""
    start, cpu = time.perf_counter(), time.process_time()
    for x, _ in ds:
        out = step(x) if step is not None else x
    _ = out.numpy()[0, 0, 0, 0]  # the last batch is really done
    return time.perf_counter() - start, time.process_time() - cpu


def summarise(n: int, runs: list[tuple[float, float]]) -> tuple[float, float]:
    """(images/s, CPU ms per image), medians over the runs."""
    return n / statistics.median(w for w, _ in runs), 1000 * statistics.median(c for _, c in runs) / n


def input_only(df: pd.DataFrame, size: int, batch: int, repeats: int) -> dict[str, tuple[float, float]]:
    n = len(df)
    paper = paper_style(df, size, batch)
    t0, c0 = time.perf_counter(), time.process_time()
    store = dataset.MemoryStore.decode([df], size)
    ours = dataset.from_store(store, df, batch, training=True, seed=0, dtype=tf.uint8)
    layer = augment.Augment(seed=0)
    on_device = tf.function(lambda x: layer(x, training=True))  # the training model's first layer
    wall, cpu = epoch(ours, on_device)
    first = {
        "ours_epoch1": (wall + time.perf_counter() - t0, cpu + time.process_time() - c0),
        "paper_epoch1": epoch(paper),
    }
    runs: dict[str, list[tuple[float, float]]] = {"paper": [], "ours": [], "ours_no_aug": []}
    for _ in range(repeats):  # interleaved: background load hits every variant alike
        runs["paper"].append(epoch(paper))
        runs["ours"].append(epoch(ours, on_device))
        runs["ours_no_aug"].append(epoch(ours))
    return {
        **{k: summarise(n, [v]) for k, v in first.items()},
        **{k: summarise(n, v) for k, v in runs.items()},
    }


def augmentation_alone(size: int, batch: int, repeats: int) -> float:
    """CPU ms per image of the augmentation by itself (a uint8 batch already in memory)."""
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (batch, size, size, 3)).astype(np.uint8))
    layer = augment.Augment(seed=0)
    step = tf.function(lambda x: layer(x, training=True))
    step(images).numpy()
    cpu = []
    for _ in range(repeats):
        c = time.process_time()
        for _ in range(5):
            step(images).numpy()
        cpu.append(time.process_time() - c)
    return 1000 * statistics.median(cpu) / (5 * batch)


def shard_vs_memory(df: pd.DataFrame, size: int, batch: int, repeats: int, root: str) -> dict[str, float]:
    memory = dataset.MemoryStore.decode([df], size)
    store = shards.ensure([df], size, root=root, data_key="bench")
    layer = augment.Augment(seed=0)
    on_device = tf.function(lambda x: layer(x, training=True))
    variants = {
        "memory": dataset.from_store(memory, df, batch, training=True, seed=0, dtype=tf.uint8),
        "shards": dataset.from_store(store, df, batch, training=True, seed=0, dtype=tf.uint8),
    }
    for ds in variants.values():
        epoch(ds)
    runs: dict[str, list[tuple[float, float]]] = {f"{k}{s}": [] for k in variants for s in ("", "+aug")}
    for _ in range(repeats):
        for k, ds in variants.items():
            runs[k].append(epoch(ds))
            runs[k + "+aug"].append(epoch(ds, on_device))
    return {k: summarise(len(df), v)[0] for k, v in runs.items()}


def stage1_end_to_end(df: pd.DataFrame, size: int, batch: int, repeats: int) -> dict[str, object]:
    """Images/s of Stage 1 training, the same classifier and precision fed by either pipeline.

    One epoch per ``fit`` call, the two alternating (interleaved), after one untimed epoch each
    (graph tracing; it also fills our store).
    """
    policy = precision.set_precision("auto")
    models, data = {}, {}
    tf.keras.utils.set_random_seed(0)
    clf = network.build_classifier(size, "none", 0.5)
    training.compile_model(clf, 1e-3)
    # The paper-style loader without its own preprocessing: the classifier preprocesses itself.
    models["paper"], data["paper"] = clf, paper_style(df, size, batch, preprocess=False)
    tf.keras.utils.set_random_seed(0)
    trainer = augment.training_model(network.build_classifier(size, "none", 0.5), augment=True, seed=0)
    training.compile_model(trainer, 1e-3)
    models["ours"] = trainer
    data["ours"] = dataset.from_store(
        dataset.MemoryStore.decode([df], size), df, batch, training=True, seed=0, dtype=tf.uint8
    )
    for name, model in models.items():
        model.fit(data[name], epochs=1, verbose=0)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            start, cpu = time.perf_counter(), time.process_time()
            model.fit(data[name], epochs=1, verbose=0)
            runs[name].append((time.perf_counter() - start, time.process_time() - cpu))
    tf.keras.mixed_precision.set_global_policy("float32")
    return {"policy": policy, **{k: summarise(len(df), v) for k, v in runs.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timed epochs per variant")
    parser.add_argument("--train-images", type=int, default=256, help="images for the Stage 1 comparison")
    parser.add_argument("--train-repeats", type=int, default=3, help="timed Stage 1 epochs per pipeline")
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        df = write_jpegs(Path(tmp), args.images)
        print(
            f"{args.images} JPEGs 600x450 -> {args.size} px, batch {args.batch} "
            f"(written in {time.perf_counter() - t0:.0f} s); load average {os.getloadavg()[0]:.1f}"
        )
        r = input_only(df, args.size, args.batch, args.repeats)
        print(f"input pipeline: images/s and CPU ms per image (median of {args.repeats} interleaved epochs)")
        rows = (
            ("paper_epoch1", "paper-style, epoch 1"),
            ("paper", "paper-style (decode, resize, preprocess, flip/brightness/saturation), epochs 2+"),
            ("ours_epoch1", "ours, epoch 1 (decode each unique image into the store)"),
            ("ours", "ours + flips/rotation/zoom/contrast on each batch (CPU), epochs 2+"),
            ("ours_no_aug", "ours without augmentation (the store alone), epochs 2+"),
        )
        for key, label in rows:
            rate, cpu = r[key]
            print(f"  {label:82s} {rate:7.0f} img/s  {cpu:6.3f} ms CPU")
        print(
            f"  ratio ours / paper-style, epochs 2+, augmentation on: {r['ours'][0] / r['paper'][0]:.1f}x "
            f"images/s, {r['paper'][1] / r['ours'][1]:.1f}x less CPU per image"
        )
        alone = augmentation_alone(args.size, args.batch, args.repeats)
        print(f"  the augmentation alone: {alone:.3f} ms CPU per image")
        s = shard_vs_memory(df, args.size, args.batch, args.repeats, str(Path(tmp) / "shards"))
        print("image store, images/s from epoch 2 (median):")
        print(
            f"  in memory {s['memory']:7.0f}   shards (memory-mapped TFRecords) {s['shards']:7.0f}   "
            f"ratio {s['shards'] / s['memory']:.2f}"
        )
        print(
            f"  with augmentation: in memory {s['memory+aug']:7.0f}   shards {s['shards+aug']:7.0f}   "
            f"ratio {s['shards+aug'] / s['memory+aug']:.2f}"
        )
        if not args.skip_training:
            e = stage1_end_to_end(df.head(args.train_images), args.size, args.batch, args.train_repeats)
            print(
                f"Stage 1 training end to end ({args.train_images} images, {e['policy']}, median of "
                f"{args.train_repeats} interleaved epochs after one untimed):"
            )
            (paper_rate, paper_cpu), (ours_rate, ours_cpu) = e["paper"], e["ours"]
            print(
                f"  fed by the paper-style loader {paper_rate:6.1f} img/s ({paper_cpu:5.1f} ms CPU/image)   "
                f"fed by ours {ours_rate:6.1f} img/s ({ours_cpu:5.1f} ms CPU/image)"
            )
            print(
                f"  ratio ours / paper-style: {ours_rate / paper_rate:.2f}x images/s, "
                f"{paper_cpu / ours_cpu:.2f}x less CPU per image"
            )
    print(f"(peak RSS {peak_rss_mib():.0f} MiB)")


if __name__ == "__main__":
    main()
