"""Validating a large dataset: wall time, images/s, and peak RSS against the size of the data.

Images are streamed and hashed in a thread pool, never all held in memory: peak RSS should stay
far below the dataset's decoded size and grow slowly with the number of rows.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import peak_rss_mib
from PIL import Image

from melanoma_mlops.data import validation as validate


def write_dataset(root: Path, n: int, size: int) -> int:
    """``n`` distinct small PNGs (about 1 in 5 malignant); returns total bytes on disk."""
    rng = np.random.default_rng(0)
    total = 0
    for cls in ("benign", "malignant"):
        (root / cls).mkdir(parents=True)
    for i in range(n):
        cls = "malignant" if i % 5 == 0 else "benign"
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        path = root / cls / f"img_{i:06d}.png"
        Image.fromarray(pixels).save(path, compress_level=1)
        total += path.stat().st_size
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        t0 = time.perf_counter()
        on_disk = write_dataset(root, args.n, args.size)
        written = time.perf_counter() - t0
        rss_before = peak_rss_mib()
        t1 = time.perf_counter()
        outcome = validate.validate(str(root), 32, Path(tmp) / "docs")
        seconds = time.perf_counter() - t1
        rss_after = peak_rss_mib()
    decoded_mib = args.n * args.size * args.size * 3 / 2**20
    print(
        f"{args.n} images of {args.size}px ({on_disk / 2**20:.0f} MiB on disk, "
        f"{decoded_mib:.0f} MiB decoded); generated in {written:.0f} s"
    )
    print(f"  validation: {seconds:.1f} s wall, {args.n / seconds:.0f} images/s, success={outcome.success}")
    print(
        f"  peak RSS: {rss_after:.0f} MiB (before validation {rss_before:.0f} MiB, "
        f"+{rss_after - rss_before:.0f} MiB)"
    )
    print(f"  peak RSS growth / decoded dataset size: {(rss_after - rss_before) / decoded_mib:.2f}")


if __name__ == "__main__":
    main()
