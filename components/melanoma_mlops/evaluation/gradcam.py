"""Grad-CAM (Selvaraju et al. 2017) for the sigmoid head, computed one gradient pass per batch.

The model is split at the ResNet50 base's output (its last convolutional block, 7x7 at 224 px),
or at conv4 when that map would be too coarse to localise anything (small demo images).
Each image is explained for the class it was assigned (malignant or benign).
Per-sample gradients come from one tape per batch: the logits of different images do not depend
on each other (BatchNorm runs in inference mode), so the gradient of their sum with respect to
the batch of feature maps holds each image's own gradient.

When lesion masks exist (the synthetic demo data keeps them) localisation becomes a number:
``energy_in_mask`` is the share of the heatmap's mass inside the lesion, ``pointing_game`` the
share of images whose heatmap maximum falls inside it.
"""

from __future__ import annotations

import io
import json
import logging
import math
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image

from melanoma_mlops import storage
from melanoma_mlops.artifacts import GRADCAM_GRID_FILE, GRADCAM_SUMMARY_FILE
from melanoma_mlops.model import dataset, network

logger = logging.getLogger(__name__)

OUTCOMES = ("TP", "FN", "FP", "TN")


# Grad-CAM needs spatial resolution: below this many cells per side (e.g. 2x2 at 64 px) the last
# block's map cannot say where anything is, so the explanation moves one block earlier
# (conv4, 16x downsampling instead of 32x), as the Grad-CAM paper shows is still faithful.
MIN_MAP_SIDE = 7
EARLIER_LAYER = "conv4_block6_out"


def explained_layer(clf: keras.Model) -> str:
    """The base layer Grad-CAM explains: the base's output, or conv4's when that is too coarse."""
    base = clf.get_layer(network.BASE_NAME)
    side = base.output.shape[1]
    return base.layers[-1].name if side is None or side >= MIN_MAP_SIDE else EARLIER_LAYER


def heatmaps(
    clf: keras.Model,
    images: np.ndarray,
    batch_size: int = 16,
    signs: np.ndarray | None = None,
    layer: str | None = None,
) -> np.ndarray:
    """Grad-CAM maps in [0, 1] at input resolution for float RGB images in [0, 255].

    ``signs`` (+1 / -1 per image) chooses the class explained: +1 the malignant logit, -1 the
    benign one (the negated logit), so each image can be explained for the decision it got.
    """
    pre = clf.get_layer("preprocess")
    base = clf.get_layer(network.BASE_NAME)
    head = clf.get_layer("malignancy")
    layer = layer or explained_layer(clf)
    features = keras.Model(base.inputs, [base.get_layer(layer).output, base.output])
    signs = np.ones(len(images), np.float32) if signs is None else np.asarray(signs, np.float32)
    size = images.shape[1:3]
    maps = []
    for start in range(0, len(images), batch_size):
        x = tf.convert_to_tensor(images[start : start + batch_size], tf.float32)
        sign = tf.convert_to_tensor(signs[start : start + batch_size, None])
        with tf.GradientTape() as tape:
            inner, top = features(pre(x), training=False)
            pooled = tf.reduce_mean(tf.cast(top, tf.float32), axis=(1, 2))
            logits = tf.matmul(pooled, tf.cast(head.kernel, tf.float32)) + tf.cast(head.bias, tf.float32)
            total = tf.reduce_sum(sign * logits)  # pre-sigmoid score of the explained class
        grads = tf.cast(tape.gradient(total, inner), tf.float32)
        inner = tf.cast(inner, tf.float32)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * inner, axis=-1))
        peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        cam = tf.math.divide_no_nan(cam, peak)
        maps.append(tf.image.resize(cam[..., None], size, method="bilinear")[..., 0].numpy())
    return np.concatenate(maps) if maps else np.zeros((0, *size), np.float32)


#: The heatmap's colours: blue (no evidence) through green and yellow to red (the strongest).
COLORMAP = "jet"
#: How much of the overlay is heatmap (the rest is the image).
OVERLAY_ALPHA = 0.4


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """Blend a jet-coloured heatmap over the image (uint8 RGB)."""
    colour = colormaps[COLORMAP](cam)[..., :3] * 255.0
    return np.clip((1 - alpha) * image + alpha * colour, 0, 255).astype(np.uint8)


def colour_scale(width: int = 256, height: int = 12) -> np.ndarray:
    """The overlay's colour bar as uint8 RGB: 0 (left, no evidence) to 1 (right, the image's maximum)."""
    ramp = np.tile(np.linspace(0.0, 1.0, width), (height, 1))
    return (colormaps[COLORMAP](ramp)[..., :3] * 255.0).astype(np.uint8)


def localisation(cam: np.ndarray, mask: np.ndarray) -> tuple[float, bool]:
    """(share of heatmap energy inside the mask, whether the heatmap's peak is inside it)."""
    total = float(cam.sum())
    inside = float(cam[mask].sum())
    peak = np.unravel_index(int(np.argmax(cam)), cam.shape)
    return (inside / total if total > 0 else 0.0), bool(mask[peak])


def load_mask(uri: str, size: int) -> np.ndarray:
    with Image.open(io.BytesIO(storage.read_bytes(uri))) as img:
        return np.asarray(img.convert("L").resize((size, size), Image.Resampling.NEAREST)) > 127


def select(preds: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """Spread ``n`` samples over TP/FN/FP/TN, most confident first, filling from the others."""
    per = math.ceil(n / len(OUTCOMES))
    picked = []
    for name in OUTCOMES:
        rows = preds[preds["outcome"] == name]
        confident = (rows["score"] - 0.5).abs().sort_values(ascending=False).index
        picked.extend(confident[:per])
    rest = preds.drop(index=picked).sample(frac=1.0, random_state=seed).index
    picked.extend(rest[: max(0, n - len(picked))])
    return preds.loc[picked[:n]]


def grid(images: list[np.ndarray], titles: list[str], path: Path, note: str = "") -> None:
    cols = min(4, len(images)) or 1
    rows = math.ceil(len(images) / cols) or 1
    fig = Figure(figsize=(3 * cols, 3.2 * rows))
    for i, (img, title) in enumerate(zip(images, titles, strict=True)):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(img)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    if note:
        fig.suptitle(note, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def explain(
    clf: keras.Model,
    preds: pd.DataFrame,
    out_dir: str | Path,
    *,
    image_size: int,
    n_samples: int,
    seed: int,
    synthetic: bool = False,
) -> dict[str, Any]:
    """Grad-CAM overlays for a sample of test predictions plus localisation metrics."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    sample = select(preds, n_samples, seed)
    uris = sample["image_uri"].astype(str).tolist()
    images = dataset.load_images(uris, image_size)
    signs = np.where(sample["pred"].astype(int).to_numpy() == 1, 1.0, -1.0)
    cams = heatmaps(clf, images, signs=signs)
    overlays, titles, records = [], [], []
    for (_, row), img, cam in zip(sample.iterrows(), images, cams, strict=True):
        ov = overlay(img, cam)
        name = f"{row['outcome']}_{Path(str(row['image_uri'])).stem}.png"
        Image.fromarray(ov).save(out / "images" / name)
        overlays.append(ov)
        titles.append(f"{row['outcome']} p={row['score']:.2f}")
        rec: dict[str, Any] = {
            "image_uri": row["image_uri"],
            "outcome": row["outcome"],
            "score": float(row["score"]),
        }
        mask_uri = str(row.get("mask_uri", "") or "")
        if mask_uri:
            rec["energy_in_mask"], rec["pointing_hit"] = localisation(cam, load_mask(mask_uri, image_size))
        records.append(rec)
    label = "SYNTHETIC demo data - " if synthetic else ""
    grid(overlays, titles, out / GRADCAM_GRID_FILE, note=f"{label}Grad-CAM on test images (TP/FN/FP/TN)")
    measured = [r for r in records if "energy_in_mask" in r]
    summary: dict[str, Any] = {
        "n_samples": len(records),
        "n_with_mask": len(measured),
        "layer": explained_layer(clf),
        "explains": "the predicted class (malignant logit for positive predictions, its negation otherwise)",
        "samples": records,
    }
    if measured:
        summary["energy_in_mask"] = float(np.mean([r["energy_in_mask"] for r in measured]))
        summary["pointing_game"] = float(np.mean([r["pointing_hit"] for r in measured]))
    (out / GRADCAM_SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return summary
