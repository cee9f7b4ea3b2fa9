"""Grouped, stratified train/validation/test split.

Why grouped: images of one lesion (or one patient, or copies of one image) are near-identical; if
they sit on both sides of a split the test score rewards memory. Every row belongs to a *unit*: the
connected component of rows sharing a ``group_id``, a ``sha256`` or a ``dup_cluster`` (rows with no
group are units of one). Units, never rows, are assigned to splits, so no group can span two splits.

Why not plain :class:`sklearn.model_selection.StratifiedGroupKFold`: its folds give only 1/k
fractions (0.15 is not reachable) and with few malignant groups it can leave a fold without a
single malignant image. We use the same idea (greedy assignment of groups to the split whose class
counts are furthest below target), with exact fractions and a first pass that guarantees one
malignant and one benign unit per split, or explains why that is impossible.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from melanoma_mlops.artifacts import class_keys
from melanoma_mlops.data.unionfind import UnionFind
from melanoma_mlops.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

SPLIT_ORDER = ("train", "val", "test")


def _key(df: pd.DataFrame, column: str) -> list[str]:
    if column not in df.columns:
        return [""] * len(df)
    return ["" if pd.isna(v) else str(v) for v in df[column]]


def split_units(manifest: pd.DataFrame) -> np.ndarray:
    """Unit number per row: rows connected through group_id, sha256 or dup_cluster share a unit."""
    uf = UnionFind(len(manifest))
    for column in ("group_id", "sha256", "dup_cluster"):
        uf.union_by_key(_key(manifest, column))
    return uf.components()


def _check_inputs(manifest: pd.DataFrame, val_fraction: float, test_fraction: float) -> None:
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < value < 1.0:
            raise ConfigError(f"{name} {value} must be between 0 and 1 (exclusive)")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"val_fraction {val_fraction} + test_fraction {test_fraction} leave no training data"
        )
    missing = [c for c in ("image_uri", "label") if c not in manifest.columns]
    if missing:
        raise DataError(f"the manifest lacks columns {missing} (found {list(manifest.columns)})")
    if "oversample_copy" in manifest.columns or manifest["image_uri"].duplicated().any():
        raise DataError(
            "the manifest holds repeated images (oversampled?): split first, then oversample the training "
            "split only -- oversampling before splitting puts copies of one image in train and test"
        )
    bad = set(manifest["label"].astype(int).unique()) - {0, 1}
    if bad:
        raise DataError(f"labels {sorted(bad)} are not 0 (benign) / 1 (malignant)")


def _unit_counts(manifest: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(unit per row, (benign, malignant) images per unit), refusing data that cannot give every split
    both classes."""
    labels = manifest["label"].astype(int).to_numpy()
    units = split_units(manifest)
    n_units = int(units.max()) + 1 if len(units) else 0
    counts = np.zeros((n_units, 2), dtype=np.int64)
    np.add.at(counts, (units, labels), 1)
    pos_units = int((counts[:, 1] > 0).sum())
    neg_units = int((counts[:, 0] > 0).sum())
    if pos_units < len(SPLIT_ORDER) or neg_units < len(SPLIT_ORDER):
        raise DataError(
            f"cannot give every split both classes: the manifest has {pos_units} groups containing a "
            f"malignant image and {neg_units} containing a benign one (a group is a patient, lesion or "
            f"duplicate cluster; {len(manifest)} images). Each of train/val/test needs its own, so at "
            "least 3 malignant and 3 benign groups are required: add data"
        )
    return units, counts


class _Assigner:
    """Greedy assignment of units to splits against per-class targets."""

    def __init__(self, counts: np.ndarray, fractions: dict[str, float], seed: int) -> None:
        self.counts = counts
        self.rank = np.random.default_rng(seed).permutation(len(counts))  # random tie-break
        totals = counts.sum(axis=0).astype(float)
        self.targets = np.array([[fractions[s] * totals[c] for c in (0, 1)] for s in SPLIT_ORDER])
        self.weights = 1.0 / np.maximum(totals, 1.0) ** 2  # each class counts equally, however rare
        self.filled = np.zeros((len(SPLIT_ORDER), 2), dtype=np.float64)
        self.assignment = np.full(len(counts), -1, dtype=np.int64)
        self.size = counts.sum(axis=1)

    def assign(self, u: int, s: int) -> None:
        self.assignment[u] = s
        self.filled[s] += self.counts[u]

    def seed_every_split(self) -> None:
        """Pass 1: the smallest malignant unit, then a benign one, for each split, held-out first."""
        by_size = np.lexsort((self.rank, self.size))
        for s in (SPLIT_ORDER.index("test"), SPLIT_ORDER.index("val"), SPLIT_ORDER.index("train")):
            for cls in (1, 0):
                if self.filled[s, cls] > 0:
                    continue
                free = by_size[(self.assignment[by_size] < 0) & (self.counts[by_size, cls] > 0)]
                if cls == 0:  # prefer a purely benign unit so the malignant budget is not spent here
                    pure = free[self.counts[free, 1] == 0]
                    free = pure if len(pure) else free
                if not len(free):
                    raise DataError(
                        f"cannot give the {SPLIT_ORDER[s]} split a {'malignant' if cls else 'benign'} image: "
                        "the groups are too entangled (groups holding both classes); at least 3 malignant "
                        "and 3 benign groups are required"
                    )
                self.assign(int(free[0]), s)

    def fill(self) -> np.ndarray:
        """Pass 2: the rest, largest first, each to the split it brings closest to its targets."""
        for u in np.lexsort((self.rank, -self.size)):
            if self.assignment[u] >= 0:
                continue
            before = ((self.filled - self.targets) ** 2 * self.weights).sum(axis=1)
            after = ((self.filled + self.counts[u] - self.targets) ** 2 * self.weights).sum(axis=1)
            self.assign(int(u), int(np.argmin(after - before)))
        return self.assignment


def split_manifest(
    manifest: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int
) -> pd.DataFrame:
    """Return ``manifest`` with a ``split`` column in {train, val, test}; deterministic given ``seed``.

    Fractions are shares of images; they are met as closely as whole groups allow.
    """
    _check_inputs(manifest, val_fraction, test_fraction)
    units, counts = _unit_counts(manifest)
    fractions = {"train": 1.0 - val_fraction - test_fraction, "val": val_fraction, "test": test_fraction}
    assigner = _Assigner(counts, fractions, seed)
    assigner.seed_every_split()
    assignment = assigner.fill()
    out = manifest.copy()
    out["split"] = np.array(SPLIT_ORDER, dtype=object)[assignment[units]].astype(str)
    summary = split_summary(out)
    for name in SPLIT_ORDER:
        s = summary[name]
        logger.info(
            "split %-5s %5d images (%.1f%%), %d groups, class 1 %d/%d = %.3f",
            name,
            s["images"],
            100 * s["fraction"],
            s["groups"],
            s["malignant"],
            s["images"],
            s["malignant_share"],
        )
    return out


def split_summary(df: pd.DataFrame, task: str = "malignant") -> dict[str, dict[str, float | int]]:
    """Per split: images, share of all images, images per class (named as the task names them:
    ``benign``/``malignant``, ``not_melanoma``/``melanoma``), the class-1 share, groups."""
    negative, positive = class_keys(task)
    units = split_units(df.drop_duplicates("image_uri")) if len(df) else np.array([], dtype=np.int64)
    unique = df.drop_duplicates("image_uri").assign(_unit=units)
    total = max(len(unique), 1)
    out: dict[str, dict[str, float | int]] = {}
    for name in SPLIT_ORDER:
        part = unique[unique["split"] == name]
        n_neg = int((part["label"].astype(int) == 0).sum())
        n_pos = int((part["label"].astype(int) == 1).sum())
        out[name] = {
            "images": len(part),
            "fraction": len(part) / total,
            negative: n_neg,
            positive: n_pos,
            f"{positive}_share": n_pos / len(part) if len(part) else 0.0,
            "groups": int(part["_unit"].nunique()),
        }
    return out
