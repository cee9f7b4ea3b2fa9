"""The cross-data-set duplicate audit: which images of an evaluated set copy the model's own images.

Public sets overlap (the ISIC 2019 training set holds HAM10000 and BCN20000 images) and clinics
re-upload: an "external" image the model trained or was tuned on measures memory, not transfer. The
audit is the validate step's own duplicate audit (:func:`melanoma_mlops.data.dedup.audit_duplicates`:
same sha256, or a 64-bit pHash within 4 bits confirmed by the 256-bit hash) run on the two manifests
together; an overlap is an evaluated image with a *direct* pair to a reference image (a chain through
other evaluated images does not count), and every byte-identical copy of it.
"""

from __future__ import annotations

import logging

import pandas as pd

from melanoma_mlops.data import dedup
from melanoma_mlops.errors import DataError

logger = logging.getLogger(__name__)

#: overlaps.csv columns: the evaluated image, how it matched, the reference image and its split.
OVERLAP_COLUMNS = ["image_uri", "kind", "reference_uri", "reference_split", "distance", "fine_distance"]
_NEEDED = ("image_uri", "label", "sha256", "phash")


def cross_overlaps(evaluated: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """One row per evaluated image that copies a reference image (columns :data:`OVERLAP_COLUMNS`).

    Both manifests need image_uri, label, sha256 and phash (a validated manifest has them); the
    reference's ``split`` column, when present, says which of its splits the copied image was in.
    """
    for what, frame in (("evaluated", evaluated), ("reference", reference)):
        missing = [c for c in _NEEDED if c not in frame.columns]
        if missing:
            raise DataError(f"the {what} manifest lacks {missing} for the overlap audit: validate it first")
    ref, ext = reference.reset_index(drop=True), evaluated.reset_index(drop=True)
    ref_uris, ext_uris = set(ref["image_uri"].astype(str)), list(ext["image_uri"].astype(str))
    # Reference rows first: an exact pair is a star around a cluster's first row, so a reference row.
    both = pd.concat([ref[list(_NEEDED)], ext[list(_NEEDED)]], ignore_index=True)
    audit = dedup.audit_duplicates(both.assign(label=both["label"].astype(int)))
    split_of = dict(
        zip(ref["image_uri"].astype(str), ref.get("split", pd.Series([""] * len(ref))), strict=True)
    )
    direct: dict[str, dict[str, object]] = {}
    for pair in audit.pairs.itertuples(index=False):
        a, b = str(pair.image_uri_a), str(pair.image_uri_b)
        if a not in ref_uris:
            a, b = b, a
        if a in ref_uris and (b not in ref_uris or a == b):
            direct.setdefault(b, {"kind": pair.kind, "reference_uri": a, "distance": pair.distance,
                                  "fine_distance": pair.fine_distance})  # fmt: skip
    for uri in set(ext_uris) & ref_uris:  # the very same file
        direct[uri] = {"kind": "exact", "reference_uri": uri, "distance": 0, "fine_distance": 0}
    # An evaluated file byte-identical to a matched one is the same image: it overlaps too.
    sha_of = dict(zip(ext_uris, ext["sha256"].astype(str), strict=True))
    matched = {sha_of[u]: row for u, row in direct.items() if u in sha_of}
    rows = []
    for uri in ext_uris:
        row = direct.get(uri) or matched.get(sha_of[uri])
        if row is not None:
            rows.append(
                {
                    "image_uri": uri,
                    **row,
                    "reference_split": str(split_of.get(str(row["reference_uri"])) or ""),
                }
            )
    found = pd.DataFrame(rows, columns=OVERLAP_COLUMNS)
    logger.info(
        "overlap audit: %d of %d evaluated images copy the model's own images (%d exact, %d near)",
        len(found), len(ext), int((found["kind"] == "exact").sum()), int((found["kind"] == "near").sum()),
    )  # fmt: skip
    return found
