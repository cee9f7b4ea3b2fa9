"""Proof that train, validation and test share no image, duplicate or group.

Why a separate check when the split is grouped by construction: the check does not trust the code
that made the split. It is run on the manifests as written, after oversampling, and fails the
pipeline (:class:`~melanoma_mlops.errors.LeakageError`) if any key crosses sets:

  image_uri    the same file
  sha256       the same bytes under another name (a copy, e.g. an oversampled one)
  phash        optional: perceptual hashes within ``near_max_distance`` bits (off by default)
  dup_cluster  a near-duplicate cluster found by the audit
  group_id     a patient / lesion group

Repeats *within* one set (oversampled training rows) are fine.
The leak itself (the published oversample-then-split, the ablation's negative control) is built in
:mod:`melanoma_mlops.experiments.ablation.leaky`, far from anything the pipeline calls.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from melanoma_mlops.artifacts import SPLITS
from melanoma_mlops.data.hashing import near_pairs
from melanoma_mlops.errors import DataError, LeakageError

logger = logging.getLogger(__name__)

KEYS = ("image_uri", "sha256", "dup_cluster", "group_id")
SETS = SPLITS
_SHOWN = 20


@dataclass
class LeakageReport:
    """Every key value found in more than one set, and the rows carrying it."""

    overlaps: pd.DataFrame  # key, value, sets
    offending: pd.DataFrame  # set, key, value, image_uri, label
    checked_keys: list[str] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.overlaps.empty

    def summary(self) -> dict[str, int]:
        """Number of leaking values per key (all zero when clean), for logs and MLflow."""
        counts = self.overlaps["key"].value_counts() if len(self.overlaps) else pd.Series(dtype=int)
        return {f"leak_{k}": int(counts.get(k, 0)) for k in self.checked_keys}


def _values(df: pd.DataFrame, key: str) -> pd.Series:
    return df[key].astype(str).where(df[key].notna(), "")


def check_leakage(
    train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame, near_max_distance: int | None = None
) -> LeakageReport:
    """Compare the three manifests on every key they carry; ``train`` may be oversampled.

    ``near_max_distance``: when set, images in different sets whose 64-bit perceptual hashes are
    within that many bits also count as leaks. Off by default because the verified near-duplicate
    clusters are already merged into ``group_id``, and the 64-bit hash alone matches some distinct
    but similar lesions (see :mod:`melanoma_mlops.data.dedup`); use it as an extra, stricter screen.
    """
    frames = {"train": train, "val": val, "test": test}
    overlaps: list[pd.DataFrame] = []
    offending: list[pd.DataFrame] = []
    checked = []
    for key in KEYS:
        present = {name: df for name, df in frames.items() if key in df.columns}
        if len(present) < 2:
            continue
        checked.append(key)
        found = _key_overlaps(key, present)
        if found is not None:
            overlaps.append(found[0])
            offending.extend(found[1])
    if near_max_distance is not None and all("phash" in df.columns for df in frames.values()):
        checked.append("phash")
        near_overlap, near_rows = _near_cross_set(frames, near_max_distance)
        if len(near_overlap):
            overlaps.append(near_overlap)
            offending.append(near_rows)
    report = LeakageReport(
        overlaps=pd.concat(overlaps, ignore_index=True)
        if overlaps
        else pd.DataFrame(columns=["key", "value", "sets"]),
        offending=(
            pd.concat(offending, ignore_index=True)
            if offending
            else pd.DataFrame(columns=["set", "key", "value", "image_uri", "label"])
        ),
        checked_keys=checked,
        sizes={name: len(df) for name, df in frames.items()},
    )
    if report.ok:
        logger.info("leakage check passed on keys %s (sizes %s)", checked, report.sizes)
    else:
        logger.warning("leakage found: %s", report.summary())
    return report


def _key_overlaps(
    key: str, present: dict[str, pd.DataFrame]
) -> tuple[pd.DataFrame, list[pd.DataFrame]] | None:
    """The values of ``key`` found in more than one set, and the rows carrying them (None if clean)."""
    long = pd.concat(
        [pd.DataFrame({"value": _values(df, key).to_numpy(), "set": name}) for name, df in present.items()],
        ignore_index=True,
    )
    long = long[long["value"] != ""].drop_duplicates()
    sets_per_value = long.groupby("value")["set"].agg(lambda s: ",".join(sorted(s, key=SETS.index)))
    leaking = sets_per_value[sets_per_value.str.contains(",")]
    if leaking.empty:
        return None
    overlap = pd.DataFrame({"key": key, "value": leaking.index, "sets": leaking.to_numpy()})
    rows = []
    for name, df in present.items():
        hit = _values(df, key).isin(set(leaking.index)).to_numpy()
        if hit.any():
            rows.append(
                pd.DataFrame(
                    {
                        "set": name,
                        "key": key,
                        "value": _values(df, key).to_numpy()[hit],
                        "image_uri": df["image_uri"].astype(str).to_numpy()[hit],
                        "label": df["label"].to_numpy()[hit] if "label" in df else -1,
                    }
                ).drop_duplicates()
            )
    return overlap, rows


def _near_cross_set(frames: dict[str, pd.DataFrame], max_distance: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pairs of images in different sets whose perceptual hashes are within ``max_distance`` bits."""
    rows = pd.concat(
        [
            pd.DataFrame(
                {
                    "set": name,
                    "phash": _values(df, "phash").to_numpy(),
                    "image_uri": df["image_uri"].astype(str).to_numpy(),
                }
                | ({"label": df["label"].to_numpy()} if "label" in df else {})
            )
            for name, df in frames.items()
        ],
        ignore_index=True,
    )
    rows = rows[rows["phash"] != ""].drop_duplicates(["set", "phash"]).reset_index(drop=True)
    empty = pd.DataFrame(columns=["key", "value", "sets"]), pd.DataFrame()
    if rows.empty:
        return empty
    try:
        values = np.array([int(h, 16) for h in rows["phash"]], dtype=np.uint64)
    except (ValueError, OverflowError) as exc:
        raise DataError(
            f"a phash value is not a 64-bit hex string ({exc}): read manifests with phash as text"
        ) from exc
    uniq, inverse = np.unique(values, return_inverse=True)
    lo, hi, _ = near_pairs(uniq, max_distance)
    # Identical hashes (distance 0) are one unique value: pair it with itself.
    partner: dict[int, set[int]] = {u: {u} for u in range(len(uniq))}
    for a, b in zip(lo, hi, strict=True):
        partner[int(a)].add(int(b))
        partner[int(b)].add(int(a))
    sets_of: dict[int, set[str]] = {}
    for pos, u in enumerate(inverse):
        sets_of.setdefault(int(u), set()).add(rows["set"].iat[pos])
    leaking = [
        u for u in range(len(uniq)) if len(set().union(*(sets_of.get(p, set()) for p in partner[u]))) > 1
    ]
    if not leaking:
        return empty
    hit = np.isin(inverse, leaking)
    bad = rows[hit].copy()
    overlap = (
        bad.groupby("phash")["set"]
        .agg(lambda s: ",".join(sorted(set(s), key=SETS.index)))
        .reset_index()
        .rename(columns={"phash": "value", "set": "sets"})
    )
    overlap.insert(0, "key", "phash")
    bad = bad.rename(columns={"phash": "value"})
    bad.insert(1, "key", "phash")
    return overlap, bad


def raise_for_leakage(report: LeakageReport) -> None:
    """Raise :class:`LeakageError` listing the first 20 offending rows and the total count."""
    if report.ok:
        return
    rows = report.offending
    lines = [
        f"  {r.set:<5} {r.image_uri}  ({r.key} {r.value} also in "
        f"{_other_sets(report, r.key, r.value, r.set)})"
        for r in rows.head(_SHOWN).itertuples()
    ]
    more = f"\n  ... and {len(rows) - _SHOWN} more rows" if len(rows) > _SHOWN else ""
    raise LeakageError(
        f"data leakage: {len(rows)} rows share an image, duplicate or group across train/val/test "
        f"({report.summary()}):\n"
        + "\n".join(lines)
        + more
        + "\nSplit with split_manifest after assign_groups, and "
        "oversample only the training split (oversample_train)."
    )


def _other_sets(report: LeakageReport, key: str, value: str, this: str) -> str:
    match = report.overlaps[(report.overlaps["key"] == key) & (report.overlaps["value"] == value)]
    if match.empty:
        return "another set"
    return ",".join(s for s in str(match["sets"].iat[0]).split(",") if s != this) or "another set"


def count_train_copies_in_test(train: pd.DataFrame, test: pd.DataFrame) -> int:
    """Number of test rows whose exact bytes (sha256) also appear in train: the leak, measured."""
    for name, df in (("train", train), ("test", test)):
        if "sha256" not in df.columns:
            raise DataError(f"the {name} manifest has no sha256 column: fingerprint the images first")
    train_shas = set(_values(train, "sha256")) - {""}
    return int(_values(test, "sha256").isin(train_shas).sum())
