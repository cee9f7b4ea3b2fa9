"""Exact and near-duplicate detection, and the grouping that keeps duplicates on one side of a split.

Why: public skin-lesion sets hold the same image more than once (re-uploads, crops, re-encodes, the
same lesion photographed twice). A random split puts one copy in train and one in test and the test
score measures memory, not skill. We find duplicates and merge them into one group *before*
splitting, so the grouped split cannot separate them.

Perceptual hash (pHash, :mod:`melanoma_mlops.data.hashing`): 64 bits from the 8x8 lowest DCT
frequencies of a 32x32 greyscale image, written as 16 hex characters; copies of one photograph
have hashes a few bits apart.

Threshold, measured (not assumed) on 600 synthetic dermoscopy-like images of the demo generator
and their transformed copies: JPEG q75 + resize and brightness/contrast/colour changes move the
64-bit hash by at most 4 bits (mean 0.7); but *distinct* lesions on skin share so much
low-frequency layout (centred dark blob, vignette) that about 1 pair in 2,500 also lands within 4
bits, some even at 0. The 64-bit hash alone therefore over-merges on this kind of image. So a
near-duplicate needs both:

1. candidate: 64-bit pHash distance <= ``max_distance`` (default 4 of 64 bits), found fast;
2. confirmed: the finer 256-bit pHash (64x64 DCT, 16x16 block; ``perceptual_hash(img, 16)``)
   distance <= ``verify_max_distance`` (default 16 of 256 bits). Transformed copies measured at
   <= 10, distinct candidate pairs at >= 22 (5th percentile 44).

Cropped copies (a few % off each side) move even the fine hash by 25-70 bits and are *not*
detected; lesion/patient ids are the defence there. Exact duplicates are files with the same
SHA-256 and need no threshold.

The candidates are found by :func:`melanoma_mlops.data.hashing.near_pairs` (a multi-index hash
search, near-linear instead of all pairs).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from melanoma_mlops import storage
from melanoma_mlops.data.hashing import FINE_HASH_SIZE, near_pairs, perceptual_hash
from melanoma_mlops.data.images import inspect_all
from melanoma_mlops.data.unionfind import UnionFind
from melanoma_mlops.errors import DataError

logger = logging.getLogger(__name__)

DEFAULT_MAX_DISTANCE = 4
DEFAULT_VERIFY_MAX_DISTANCE = 16
_KIND_RANK = {"patient": 0, "lesion": 1, "group": 2}
_MAX_CLIQUE = 50  # identical-hash groups larger than this are linked as a star, not all pairs
PAIR_COLUMNS = ["image_uri_a", "image_uri_b", "kind", "distance", "fine_distance", "label_a", "label_b"]


def fingerprint_images(manifest: pd.DataFrame) -> pd.DataFrame:
    """Add ``sha256``, ``phash``, ``width``, ``height`` reading every image once.

    Uses the validate step's own inspection (:func:`melanoma_mlops.data.images.inspect_all`) so
    there is one way images are opened and hashed. An unreadable image raises :class:`DataError`.
    """
    out = manifest.copy()
    infos = list(inspect_all(out["image_uri"].astype(str), total=len(out)))
    bad = [i for i in infos if i.error]
    if bad:
        listed = "; ".join(f"{i.image_uri}: {i.error}" for i in bad[:10])
        raise DataError(f"{len(bad)} unreadable image(s): {listed}. Remove or replace these files.")
    out["sha256"] = [i.sha256 for i in infos]
    out["phash"] = [i.phash for i in infos]
    out["width"] = [i.width for i in infos]
    out["height"] = [i.height for i in infos]
    return out


def _key_column(df: pd.DataFrame, column: str) -> list[str]:
    if column not in df.columns:
        return [""] * len(df)
    return ["" if pd.isna(v) else str(v) for v in df[column]]


# ------------------------------------------------------------------------------------ the audit
@dataclass
class DuplicateAudit:
    """What :func:`audit_duplicates` found.

    ``clusters``: one row per manifest row (same order): image_uri, sha256, dup_cluster ('' for an
    image with no duplicate), cluster_size.
    ``pairs``: a spanning set of duplicate pairs (exact pairs as a star around each cluster's first
    file; near pairs between distinct files, with the 64-bit ``distance`` and the 256-bit
    ``fine_distance``, -1 when not verified), enough to rebuild every cluster; so a cluster whose
    labels disagree always shows at least one pair in ``conflicts``.
    """

    clusters: pd.DataFrame
    pairs: pd.DataFrame
    conflicts: pd.DataFrame
    max_distance: int
    rejected_candidates: int = 0

    def summary(self) -> dict[str, int]:
        """Counts for logs and MLflow metrics."""
        in_clusters = int((self.clusters["dup_cluster"] != "").sum())
        n_clusters = int(self.clusters.loc[self.clusters["dup_cluster"] != "", "dup_cluster"].nunique())
        return {
            "exact_pairs": int((self.pairs["kind"] == "exact").sum()),
            "near_pairs": int((self.pairs["kind"] == "near").sum()),
            "duplicate_clusters": n_clusters,
            "images_in_duplicate_clusters": in_clusters,
            "redundant_images": in_clusters - n_clusters,
            "label_conflicts": len(self.conflicts),
            "near_candidates_rejected": self.rejected_candidates,
        }


def _fine_hashes(manifest: pd.DataFrame, positions: Iterable[int]) -> dict[int, int]:
    """256-bit hashes of the given rows: from a ``phash_fine`` column, else by reading the image."""
    out: dict[int, int] = {}
    column = manifest["phash_fine"] if "phash_fine" in manifest.columns else None
    for pos in sorted(set(int(p) for p in positions)):
        value = "" if column is None or pd.isna(column.iat[pos]) else str(column.iat[pos])
        if not value:
            uri = str(manifest["image_uri"].iat[pos])
            try:
                with Image.open(io.BytesIO(storage.read_bytes(uri))) as img:
                    value = perceptual_hash(img, FINE_HASH_SIZE)
            except (UnidentifiedImageError, OSError) as exc:
                raise DataError(
                    f"{uri} cannot be read to confirm a near-duplicate ({exc}): fix the file, or call "
                    "audit_duplicates(..., verify=False) to trust the 64-bit hash alone"
                ) from exc
        out[pos] = int(value, 16)
    return out


def _near_candidates(
    reps: np.ndarray, rep_hashes: np.ndarray, max_distance: int
) -> list[tuple[int, int, int]]:
    """(row a, row b, 64-bit distance) for every candidate pair among the representative rows."""
    uniq, inverse = np.unique(rep_hashes, return_inverse=True)
    members: dict[int, list[int]] = {}
    for rep, u in zip(reps, inverse, strict=True):
        members.setdefault(int(u), []).append(int(rep))
    out: list[tuple[int, int, int]] = []
    for rows in members.values():  # distinct files with an identical hash
        if len(rows) > _MAX_CLIQUE:
            logger.warning("%d files share one perceptual hash: linking them as a star", len(rows))
            out.extend((rows[0], r, 0) for r in rows[1:])
        else:
            out.extend((a, b, 0) for k, a in enumerate(rows) for b in rows[k + 1 :])
    lo, hi, dist = near_pairs(uniq, max_distance)
    for u, v, d in zip(lo, hi, dist, strict=True):
        out.extend((a, b, int(d)) for a in members[int(u)] for b in members[int(v)])
    return out


Pair = tuple[int, int, str, int, int]  # (row a, row b, kind, 64-bit distance, 256-bit distance)


def _exact_pairs(shas: np.ndarray) -> tuple[list[Pair], list[int]]:
    """A star from each SHA-256 cluster's first row to the others; and one representative per file."""
    first_row: dict[str, int] = {}
    pairs: list[Pair] = []
    reps: list[int] = []
    for pos, sha in enumerate(shas):
        if sha and sha in first_row:
            pairs.append((first_row[sha], pos, "exact", 0, 0))
            continue
        if sha:
            first_row[sha] = pos
        reps.append(pos)
    return pairs, reps


def _verified_near_pairs(
    manifest: pd.DataFrame,
    reps: list[int],
    max_distance: int,
    verify: bool,
    verify_max_distance: int,
) -> tuple[list[Pair], int]:
    """Near pairs among the representatives by the 64-bit hash, confirmed by the 256-bit one."""
    phashes = _key_column(manifest, "phash")
    reps_with_hash = np.array([p for p in reps if phashes[p]], dtype=np.int64)
    if not len(reps_with_hash):
        return [], 0
    try:
        rep_hashes = np.array([int(phashes[p], 16) for p in reps_with_hash], dtype=np.uint64)
    except (ValueError, OverflowError) as exc:
        raise DataError(f"a phash value is not a 64-bit hex string ({exc}): recompute the hashes") from exc
    candidates = _near_candidates(reps_with_hash, rep_hashes, max_distance)
    fine = _fine_hashes(manifest, [p for a, b, _ in candidates for p in (a, b)]) if verify else {}
    pairs: list[Pair] = []
    rejected = 0
    for a, b, dist in candidates:
        fine_dist = (fine[a] ^ fine[b]).bit_count() if verify else -1
        if verify and fine_dist > verify_max_distance:
            rejected += 1
            continue
        pairs.append((a, b, "near", dist, fine_dist))
    if rejected:
        logger.info(
            "%d of %d near-duplicate candidates (64-bit pHash <= %d) rejected by the 256-bit hash (> %d)",
            rejected,
            len(candidates),
            max_distance,
            verify_max_distance,
        )
    return pairs, rejected


def _pair_frame(pairs: list[Pair], uris: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    a_idx = np.array([p[0] for p in pairs], dtype=np.int64)
    b_idx = np.array([p[1] for p in pairs], dtype=np.int64)
    return pd.DataFrame(
        {
            "image_uri_a": uris[a_idx],
            "image_uri_b": uris[b_idx],
            "kind": [p[2] for p in pairs],
            "distance": np.array([p[3] for p in pairs], dtype=np.int64),
            "fine_distance": np.array([p[4] for p in pairs], dtype=np.int64),
            "label_a": labels[a_idx],
            "label_b": labels[b_idx],
        },
        columns=PAIR_COLUMNS,
    )


def _clusters(pairs: list[Pair], uris: np.ndarray, shas: np.ndarray) -> pd.DataFrame:
    """One row per manifest row: its duplicate cluster ('' when it has no duplicate) and its size."""
    n = len(uris)
    uf = UnionFind(n)
    uf.union_pairs((a, b) for a, b, *_ in pairs)
    comp = uf.components()
    sizes = np.bincount(comp)[comp] if n else np.zeros(0, dtype=np.int64)
    # Cluster ids numbered by first appearance among the clustered rows, so they are deterministic.
    cluster_ids = np.full(n, "", dtype=object)
    numbering: dict[int, str] = {}
    for pos in np.nonzero(sizes > 1)[0]:
        cluster_ids[pos] = numbering.setdefault(int(comp[pos]), f"dup-{len(numbering) + 1:05d}")
    return pd.DataFrame(
        {
            "image_uri": uris,
            "sha256": shas.astype(str),
            "dup_cluster": cluster_ids.astype(str),
            "cluster_size": np.where(sizes > 1, sizes, 1),
        }
    )


def audit_duplicates(
    manifest: pd.DataFrame,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    *,
    verify: bool = True,
    verify_max_distance: int = DEFAULT_VERIFY_MAX_DISTANCE,
) -> DuplicateAudit:
    """Find exact (same SHA-256) and near (pHash within ``max_distance`` bits) duplicates.

    ``manifest`` needs image_uri, label, sha256 and phash (see :func:`fingerprint_images`). With
    ``verify`` (default) every near candidate is confirmed with the 256-bit hash, taken from a
    ``phash_fine`` column or computed by reading the two images (only candidates are read).
    """
    missing = [c for c in ("image_uri", "label", "sha256", "phash") if c not in manifest.columns]
    if missing:
        raise DataError(
            f"the duplicate audit needs columns {missing} which the manifest lacks "
            f"(found {list(manifest.columns)}): run fingerprint_images first"
        )
    if not 0 <= max_distance <= 16:
        raise DataError(
            f"max_distance {max_distance} is outside 0..16 bits: above that unrelated images match"
        )
    manifest = manifest.reset_index(drop=True)
    uris = manifest["image_uri"].astype(str).to_numpy()
    labels = manifest["label"].astype(int).to_numpy()
    shas = np.array(_key_column(manifest, "sha256"), dtype=object)
    pairs, reps = _exact_pairs(shas)
    near, rejected = _verified_near_pairs(manifest, reps, max_distance, verify, verify_max_distance)
    pairs += near
    pair_df = _pair_frame(pairs, uris, labels)
    conflicts = pair_df[pair_df["label_a"] != pair_df["label_b"]].reset_index(drop=True)
    audit = DuplicateAudit(
        clusters=_clusters(pairs, uris, shas),
        pairs=pair_df,
        conflicts=conflicts,
        max_distance=max_distance,
        rejected_candidates=rejected,
    )
    logger.info("duplicate audit (max distance %d bits): %s", max_distance, audit.summary())
    if len(conflicts):
        logger.warning(
            "%d duplicate pairs carry different labels, e.g. %s vs %s",
            len(conflicts),
            conflicts.iloc[0]["image_uri_a"],
            conflicts.iloc[0]["image_uri_b"],
        )
    return audit


def assign_groups(manifest: pd.DataFrame, audit: DuplicateAudit) -> pd.DataFrame:
    """Fill/merge ``group_id`` so every duplicate cluster lies inside one group.

    Union-find over the existing groups (patient/lesion) and the duplicate clusters: two patients
    connected by one duplicated image become one group, because splitting them would put a copy of
    that image on both sides. The merged group keeps its most specific existing id (patient, then
    lesion, then manifest group; alphabetical among equals); a cluster with no existing group gets
    ``dup:<cluster>`` (group_kind ``duplicate``). Adds the ``dup_cluster`` column.
    """
    if manifest["image_uri"].duplicated().any():
        dup = manifest.loc[manifest["image_uri"].duplicated(), "image_uri"].iloc[0]
        raise DataError(
            f"image_uri {dup} appears twice in the manifest: assign groups before oversampling, "
            "on one row per image"
        )
    cluster_of = dict(zip(audit.clusters["image_uri"], audit.clusters["dup_cluster"], strict=True))
    out = manifest.copy()
    out["dup_cluster"] = [cluster_of.get(u, "") for u in out["image_uri"].astype(str)]
    groups = _key_column(out, "group_id")
    kinds = _key_column(out, "group_kind")
    uf = UnionFind(len(out))
    uf.union_by_key(groups)
    uf.union_by_key(list(out["dup_cluster"]))
    comp = uf.components()

    new_group: dict[int, tuple[str, str]] = {}
    members_groups: dict[int, set[str]] = {}
    for pos, c in enumerate(comp):
        if groups[pos]:
            members_groups.setdefault(int(c), set()).add(groups[pos])
    kind_of = dict(zip(groups, kinds, strict=True))
    n_merged = 0
    for c, gset in members_groups.items():
        # The most specific identity names the merged group: a patient outranks a lesion.
        chosen = min(gset, key=lambda g: (_KIND_RANK.get(kind_of.get(g, ""), len(_KIND_RANK)), g))
        new_group[int(c)] = (chosen, kind_of.get(chosen, ""))
        n_merged += len(gset) - 1
    final_ids, final_kinds = [], []
    for pos, c in enumerate(comp):
        if int(c) in new_group:
            gid, kind = new_group[int(c)]
        elif out["dup_cluster"].iat[pos]:
            gid, kind = f"dup:{out['dup_cluster'].iat[pos]}", "duplicate"
        else:
            gid, kind = "", kinds[pos]
        final_ids.append(gid)
        final_kinds.append(kind)
    out["group_id"] = final_ids
    out["group_kind"] = final_kinds
    logger.info(
        "grouping: %d groups merged into others through duplicates; %d images now in %d groups",
        n_merged,
        sum(1 for g in final_ids if g),
        len({g for g in final_ids if g}),
    )
    return out
