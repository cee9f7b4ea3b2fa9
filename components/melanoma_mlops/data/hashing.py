"""Perceptual image hashes (pHash, Zauner 2010) for the near-duplicate audit.

The image is converted to greyscale, resized to ``4 * hash_size`` square and transformed with a
2-D DCT-II; the ``hash_size`` x ``hash_size`` lowest-frequency coefficients are kept and each becomes
one bit: 1 when it is above the median of the non-DC coefficients. Low frequencies survive
re-encoding, resizing and brightness/contrast/colour changes, so copies of one photograph have
hashes a few bits apart. :mod:`melanoma_mlops.data.dedup` explains the thresholds.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

HASH_BITS = 64
FINE_HASH_SIZE = 16  # 256-bit verification hash


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II basis: ``M @ x`` is the DCT of the column vector ``x``."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_DCT: dict[int, np.ndarray] = {}


def perceptual_hash(img: Image.Image, hash_size: int = 8) -> str:
    """DCT perceptual hash (see the module docstring) as hex: 64 bits for ``hash_size`` 8.

    The image is reduced to ``4 * hash_size`` pixels square and the ``hash_size`` x ``hash_size``
    lowest DCT frequencies become the bits; ``hash_size=16`` gives the 256-bit verification hash.
    """
    side = 4 * hash_size
    if side not in _DCT:
        _DCT[side] = _dct_matrix(side)
    dct = _DCT[side]
    grey = img.convert("L").resize((side, side), Image.Resampling.LANCZOS)
    pixels = np.asarray(grey, dtype=np.float64)
    coeffs = (dct @ pixels @ dct.T)[:hash_size, :hash_size].ravel()
    # The DC term is the mean brightness: it would dominate the median and carries no structure.
    bits = coeffs > np.median(coeffs[1:])
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return f"{value:0{hash_size * hash_size // 4}x}"


def hamming(a: str, b: str) -> int:
    """Hamming distance of two hex hashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()
