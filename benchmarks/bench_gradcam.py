"""Grad-CAM: one gradient pass per batch (what the pipeline does) vs one pass per image."""

from __future__ import annotations

import argparse

import numpy as np
from _common import best_of

from melanoma_mlops.evaluation import gradcam
from melanoma_mlops.model import network as model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    clf = model.build_classifier(args.size, "none", 0.5)
    images = (
        np.random.default_rng(0).uniform(0, 255, (args.images, args.size, args.size, 3)).astype("float32")
    )
    gradcam.heatmaps(clf, images[:2])  # warm-up (graph tracing)
    batched = best_of(lambda: gradcam.heatmaps(clf, images, batch_size=args.batch))
    per_image = best_of(lambda: gradcam.heatmaps(clf, images, batch_size=1))
    print(f"Grad-CAM on {args.images} images of {args.size}px (ResNet50, CPU threads as available)")
    print(f"  batched (batch {args.batch}): {batched:.2f} s  ({args.images / batched:.1f} images/s)")
    print(f"  per image           : {per_image:.2f} s  ({args.images / per_image:.1f} images/s)")
    print(f"  speed-up batched / per image: {per_image / batched:.2f}x")


if __name__ == "__main__":
    main()
