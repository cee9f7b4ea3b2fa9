"""What an image looked like, in a few numbers: the statistics the prediction log and the reference
profile record for every image the model scores.

A new dermatoscope, another lighting or a phone camera change these long before anyone notices
a change in the model's answers (the shift a drift monitor looks for). They are computed on the
pixels the network itself takes (decoded and resized as in training, :mod:`.decoding`), so the
reference profile of a version (its validation and test images, the register step) and every
served image are measured in the same way at the same resolution; only ``width`` and ``height``
are the original image's.
"""

from __future__ import annotations

import numpy as np

#: Columns of the statistics, in record order (docs/monitoring.md says what each one measures).
STAT_COLUMNS = (
    "width",
    "height",
    "mean_r",
    "mean_g",
    "mean_b",
    "std_r",
    "std_g",
    "std_b",
    "brightness",
    "contrast",
    "saturation",
    "sharpness",
)
#: ITU-R BT.601 luma weights: brightness and contrast as a viewer perceives them.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _laplacian_variance(luma: np.ndarray) -> np.ndarray:
    """Variance of the 4-neighbour Laplacian per image: the usual focus measure (low = blurred)."""
    lap = (
        -4.0 * luma[:, 1:-1, 1:-1]
        + luma[:, :-2, 1:-1]
        + luma[:, 2:, 1:-1]
        + luma[:, 1:-1, :-2]
        + luma[:, 1:-1, 2:]
    )
    return lap.reshape(len(luma), -1).var(axis=1)


def image_statistics(pixels: np.ndarray, sizes: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    """One array per :data:`STAT_COLUMNS` entry for a (N, S, S, 3) batch in [0, 255].

    ``sizes`` holds each image's original (width, height). Saturation is HSV's (max - min) / max,
    averaged over the image; brightness and contrast are the mean and standard deviation of the luma.
    """
    x = np.asarray(pixels, np.float32)
    n = len(x)
    if n == 0:
        return {name: np.zeros(0) for name in STAT_COLUMNS}
    flat = x.reshape(n, -1, 3)
    luma = x @ _LUMA
    high, low = x.max(axis=-1), x.min(axis=-1)
    saturation = np.where(high > 0, (high - low) / np.maximum(high, 1e-6), 0.0)
    means, stds = flat.mean(axis=1), flat.std(axis=1)
    return {
        "width": np.array([w for w, _ in sizes], np.float64),
        "height": np.array([h for _, h in sizes], np.float64),
        "mean_r": means[:, 0],
        "mean_g": means[:, 1],
        "mean_b": means[:, 2],
        "std_r": stds[:, 0],
        "std_g": stds[:, 1],
        "std_b": stds[:, 2],
        "brightness": luma.reshape(n, -1).mean(axis=1),
        "contrast": luma.reshape(n, -1).std(axis=1),
        "saturation": saturation.reshape(n, -1).mean(axis=1),
        "sharpness": _laplacian_variance(luma),
    }
