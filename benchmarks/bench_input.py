"""The tf.data input pipeline: a second epoch with the decoded-image cache vs without it."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
from _common import best_of

from melanoma_mlops.data import demo as demo_data
from melanoma_mlops.model import dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        demo_data.generate(tmp, n=args.images, size=256, seed=0, layout="folder")
        paths = sorted(p for p in Path(tmp).glob("*/*.png"))
        df = pd.DataFrame(
            {"image_uri": [str(p) for p in paths], "label": [p.parent.name == "malignant" for p in paths]}
        )

        def epoch(ds) -> None:
            for _ in ds:
                pass

        cached = dataset.make_dataset(df, args.size, 32, training=True, augment=True)
        epoch(cached)  # fills the cache
        with_cache = best_of(lambda: epoch(cached))
        saved = dataset.CACHE_BUDGET_BYTES
        dataset.CACHE_BUDGET_BYTES = 0
        try:
            uncached = dataset.make_dataset(df, args.size, 32, training=True, augment=True)
            epoch(uncached)
            without = best_of(lambda: epoch(uncached))
        finally:
            dataset.CACHE_BUDGET_BYTES = saved
    print(f"one training epoch of {args.images} 256px PNGs decoded to {args.size}px (augmented):")
    print(f"  with the decoded-image cache : {with_cache:.2f} s ({args.images / with_cache:.0f} images/s)")
    print(f"  decoding every epoch         : {without:.2f} s ({args.images / without:.0f} images/s)")
    print(f"  speed-up: {without / with_cache:.2f}x")


if __name__ == "__main__":
    main()
