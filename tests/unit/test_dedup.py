"""dedup: hashing, exact/near duplicates, the fast multi-index search, and group merging."""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datagen import image, write_image
from PIL import Image, ImageEnhance

from melanoma_mlops.data.dedup import (
    DEFAULT_MAX_DISTANCE,
    assign_groups,
    audit_duplicates,
    fingerprint_images,
)
from melanoma_mlops.data.hashing import hamming, near_pairs, perceptual_hash
from melanoma_mlops.errors import DataError


def _jpeg(img: Image.Image, quality: int = 90, size: int | None = None) -> bytes:
    """The image re-encoded as JPEG bytes (written as is: saving a decoded JPEG would encode twice)."""
    buf = io.BytesIO()
    (img.resize((size, size)) if size else img).convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def test_perceptual_hash_format_and_robustness() -> None:
    base = image(1, size=64)
    h = perceptual_hash(base)
    assert len(h) == 16 and int(h, 16) >= 0
    assert len(perceptual_hash(base, 16)) == 64
    assert perceptual_hash(base) == perceptual_hash(base.copy())
    assert hamming(h, perceptual_hash(base.resize((48, 48)))) <= DEFAULT_MAX_DISTANCE
    assert hamming(h, perceptual_hash(ImageEnhance.Brightness(base).enhance(1.1))) <= DEFAULT_MAX_DISTANCE
    others = [hamming(h, perceptual_hash(image(s, size=64))) for s in range(2, 40)]
    assert min(others) > DEFAULT_MAX_DISTANCE


def test_near_pairs_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, 400, dtype=np.uint64) * np.uint64(2)
    # plant near neighbours at 1..6 flipped bits
    planted = [
        hashes[i] ^ np.uint64(sum(1 << int(b) for b in rng.choice(64, k, replace=False)))
        for i, k in zip(range(60), [1, 2, 3, 4, 5, 6] * 10, strict=True)
    ]
    hashes = np.unique(np.concatenate([hashes, np.array(planted, dtype=np.uint64)]))
    lo, hi, dist = near_pairs(hashes, 4)
    brute = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    i, j = np.nonzero(np.triu(brute <= 4, k=1))
    assert sorted(zip(lo.tolist(), hi.tolist(), strict=True)) == sorted(
        zip(i.tolist(), j.tolist(), strict=True)
    )
    assert (dist == brute[lo, hi]).all()


def test_audit_is_fast_on_20000_rows() -> None:
    rng = np.random.default_rng(1)
    n = 20_000
    values = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2)
    values[1] = values[0] ^ np.uint64(0b101)  # one near pair at distance 2
    df = pd.DataFrame(
        {
            "image_uri": [f"/x/{i}.png" for i in range(n)],
            "label": rng.integers(0, 2, n),
            "sha256": [f"{i:064x}" for i in range(n)],
            "phash": [f"{v:016x}" for v in values],
        }
    )
    start = time.perf_counter()
    audit = audit_duplicates(df, verify=False)
    assert time.perf_counter() - start < 5.0
    assert audit.summary()["near_pairs"] >= 1
    assert audit.clusters.loc[0, "dup_cluster"] == audit.clusters.loc[1, "dup_cluster"] != ""


def _files(tmp_path: Path) -> pd.DataFrame:
    """Six images: an exact copy (same label), a re-encoded copy with the OTHER label, two loners."""
    paths = [write_image(tmp_path / f"img_{i}.png", 10 + i, size=64) for i in range(4)]
    shutil.copyfile(paths[0], tmp_path / "copy_of_0.png")
    (tmp_path / "reencoded_1.jpg").write_bytes(_jpeg(Image.open(paths[1]), quality=90))
    rows = [(str(p), 0) for p in paths] + [
        (str(tmp_path / "copy_of_0.png"), 0),
        (str(tmp_path / "reencoded_1.jpg"), 1),
    ]
    return fingerprint_images(pd.DataFrame(rows, columns=["image_uri", "label"]))


def test_exact_and_near_duplicates_and_conflicts(tmp_path: Path) -> None:
    df = _files(tmp_path)
    assert {"sha256", "phash", "width", "height"} <= set(df.columns)
    audit = audit_duplicates(df)
    kinds = audit.pairs.set_index("image_uri_b")["kind"].to_dict()
    assert kinds[str(tmp_path / "copy_of_0.png")] == "exact"
    assert kinds[str(tmp_path / "reencoded_1.jpg")] == "near"
    clusters = audit.clusters.set_index("image_uri")["dup_cluster"]
    assert clusters[str(tmp_path / "img_0.png")] == clusters[str(tmp_path / "copy_of_0.png")] != ""
    assert clusters[str(tmp_path / "img_2.png")] == ""
    assert len(audit.conflicts) == 1 and audit.conflicts.iloc[0]["kind"] == "near"


def test_similar_but_distinct_images_are_rejected_by_the_fine_hash(tmp_path: Path) -> None:
    a = write_image(tmp_path / "a.png", 1, size=64)
    b = write_image(tmp_path / "b.png", 2, size=64)
    df = fingerprint_images(pd.DataFrame({"image_uri": [str(a), str(b)], "label": [0, 1]}))
    df["phash"] = df["phash"].iloc[0]  # pretend the coarse hashes collide, as similar lesions do
    assert audit_duplicates(df, verify=False).summary()["near_pairs"] == 1
    audit = audit_duplicates(df)
    assert audit.summary()["near_pairs"] == 0 and audit.summary()["near_candidates_rejected"] == 1


def test_missing_hash_columns_named() -> None:
    with pytest.raises(DataError, match=r"\['phash'\].*fingerprint_images"):
        audit_duplicates(pd.DataFrame({"image_uri": ["a"], "label": [0], "sha256": ["x"]}))


def test_assign_groups_merges_patients_linked_by_a_duplicate(tmp_path: Path) -> None:
    df = _files(tmp_path)
    df["group_id"] = ["patient:A", "patient:B", "patient:C", "", "patient:D", ""]
    df["group_kind"] = ["patient", "patient", "patient", "", "patient", ""]
    out = assign_groups(df, audit_duplicates(df))
    by_uri = out.set_index("image_uri")["group_id"]
    # img_0 (A) and its exact copy (D) are one image: A and D become one group
    assert by_uri[str(tmp_path / "img_0.png")] == by_uri[str(tmp_path / "copy_of_0.png")] == "patient:A"
    # the re-encoded copy had no group: it joins img_1's patient
    assert by_uri[str(tmp_path / "reencoded_1.jpg")] == "patient:B"
    assert by_uri[str(tmp_path / "img_2.png")] == "patient:C"
    assert by_uri[str(tmp_path / "img_3.png")] == ""
    assert "dup_cluster" in out.columns


def test_assign_groups_names_duplicate_only_groups(tmp_path: Path) -> None:
    df = _files(tmp_path)
    df["group_id"] = ""
    out = assign_groups(df, audit_duplicates(df))
    gid = out.set_index("image_uri")["group_id"][str(tmp_path / "copy_of_0.png")]
    assert gid.startswith("dup:dup-")
    assert (out.loc[out["group_id"] == gid, "group_kind"] == "duplicate").all()
