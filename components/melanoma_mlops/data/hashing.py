"""Perceptual image hashes (pHash, Zauner 2010) for the near-duplicate audit.

The image is converted to greyscale, resized to ``4 * hash_size`` square and transformed with a
2-D DCT-II; the ``hash_size`` x ``hash_size`` lowest-frequency coefficients are kept and each becomes
one bit: 1 when it is above the median of the non-DC coefficients. Low frequencies survive
re-encoding, resizing and brightness/contrast/colour changes, so copies of one photograph have
hashes a few bits apart. :mod:`melanoma_mlops.data.dedup` explains the thresholds.

Search (:func:`near_pairs`, for the duplicate audit and the leakage check): by the pigeonhole
principle, two 64-bit hashes that differ in at most ``d`` bits agree exactly on at least one of
``d + 1`` disjoint bands. We bucket hashes on each band and only compare hashes that share a bucket
(a multi-index hash search), which is near-linear for 20,000 images instead of 200 million pairwise
comparisons.
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


def _band_layout(max_distance: int) -> list[tuple[int, int]]:
    """(shift, width) of ``max_distance + 1`` disjoint bands covering the 64 bits."""
    n_bands = max_distance + 1
    widths = [HASH_BITS // n_bands + (1 if i < HASH_BITS % n_bands else 0) for i in range(n_bands)]
    out, shift = [], HASH_BITS
    for width in widths:
        shift -= width
        out.append((shift, width))
    return out


def near_pairs(hashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)``, i < j, of distinct uint64 ``hashes`` within ``max_distance`` bits.

    Multi-index search: candidates share one band exactly (pigeonhole), found by sorting each band
    and comparing neighbours at growing offsets inside equal runs, all vectorised in numpy.
    """
    n = len(hashes)
    empty = np.empty(0, dtype=np.int64)
    if n < 2:
        return empty, empty, empty
    cand_i: list[np.ndarray] = []
    cand_j: list[np.ndarray] = []
    for shift, width in _band_layout(max_distance):
        band = (hashes >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        order = np.argsort(band, kind="stable")
        sorted_band = band[order]
        offset = 1
        while offset < n:
            same = sorted_band[offset:] == sorted_band[:-offset]
            if not same.any():
                break  # runs are contiguous: no equal pair at this offset means none further
            a, b = order[:-offset][same], order[offset:][same]
            # Keep only the pairs within reach now: the candidates sharing a band outnumber them by
            # orders of magnitude on large sets (~10^7 per band at 400,000 images), the kept pairs not.
            near = np.bitwise_count(hashes[a] ^ hashes[b]) <= max_distance
            cand_i.append(a[near])
            cand_j.append(b[near])
            offset += 1
    if not cand_i:
        return empty, empty, empty
    i = np.concatenate(cand_i)
    j = np.concatenate(cand_j)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    codes = np.unique(lo.astype(np.int64) * n + hi)
    lo, hi = codes // n, codes % n
    dist = np.bitwise_count(hashes[lo] ^ hashes[hi]).astype(np.int64)
    keep = dist <= max_distance
    return lo[keep], hi[keep], dist[keep]
