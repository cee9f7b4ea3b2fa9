"""What every layout loader shares: the file index of the source, CSV reading, exclusion records,
the error messages, and the grouping of rows by patient / lesion / manifest group.
"""

from __future__ import annotations

import io
import logging
import os
import posixpath
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import NamedTuple

import pandas as pd

from melanoma_mlops import storage
from melanoma_mlops.data.sources import metadata
from melanoma_mlops.data.unionfind import UnionFind
from melanoma_mlops.errors import DataError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
MASK_FOLDERS = frozenset({"masks", "mask"})
#: The ISIC segmentation challenges name a mask ``<isic_id>_segmentation.png``.
MASK_SUFFIX = "_segmentation"
GROUP_KINDS = ("patient", "lesion", "group", "")
EXCLUDED_COLUMNS = ["image_uri", "source_label", "reason"]
# ISIC metadata columns carried into the manifest when present, as the subgroup columns of
# :mod:`.metadata` (the ISIC Archive's fields: ``fitzpatrick_skin_type`` I-VI, ``attribution`` the
# institution that contributed the image).
CARRY = {
    "age_approx": "age",
    "sex": "sex",
    "anatom_site_general": "anatom_site",
    "anatom_site_general_challenge": "anatom_site",
    "fitzpatrick_skin_type": "skin_tone",
    "attribution": "clinic",
}
MAX_LISTED = 10


class Loaded(NamedTuple):
    """What a layout loader returns: the rows, what it left out and why, the label mapping, notes."""

    manifest: pd.DataFrame
    excluded: pd.DataFrame
    label_mapping: dict[str, int]
    notes: list[str]


@dataclass
class SourceResult:
    """A data source read into a manifest, with what was left out and why."""

    manifest: pd.DataFrame
    layout: str
    excluded: pd.DataFrame
    label_mapping: dict[str, int]
    source: str = ""
    task: str = "malignant"
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        """Counts for logs and MLflow params."""
        counts = self.manifest["label"].value_counts()
        reasons = self.excluded["reason"].value_counts().to_dict() if len(self.excluded) else {}
        return {
            "layout": self.layout,
            "task": self.task,
            "images": len(self.manifest),
            "benign": int(counts.get(0, 0)),
            "malignant": int(counts.get(1, 0)),
            "excluded": len(self.excluded),
            "excluded_reasons": {str(k): int(v) for k, v in reasons.items()},
            "label_mapping": dict(self.label_mapping),
        }


# ---------------------------------------------------------------------------------- file index
@dataclass
class FileTree:
    """All files below the source root, listed once (one S3 listing, not one request per file).

    ``undecodable``: files whose names are not valid UTF-8 (kept out of ``files``: such a name
    cannot go into a CSV manifest or an MLflow record), reported by their bytes.
    ``allow_outside_root``: a manifest CSV may name images outside ``root``, and a local folder's
    symlinks may lead out of it (``--allow-outside-root``).
    ``outside``: what the local walk left out, as excluded rows (:mod:`.confine`: symlinks out of
    the root, entries that are not regular files), never opened.
    """

    root: str
    files: list[str]
    undecodable: list[str] = field(default_factory=list)
    allow_outside_root: bool = False
    outside: list[dict[str, object]] = field(default_factory=list)

    @classmethod
    def listing(
        cls,
        root: str,
        files: list[str],
        allow_outside_root: bool = False,
        outside: list[dict[str, object]] | None = None,
    ) -> FileTree:
        good, bad = [], []
        for uri in files:
            (good if is_utf8(uri) else bad).append(uri)
        if bad:
            logger.warning(
                "%d file name(s) under %s are not valid UTF-8 and are left out (rename them): %s",
                len(bad),
                printable(root),
                ", ".join(repr(os.fsencode(u)) for u in bad[:MAX_LISTED]),
            )
        return cls(root, good, bad, allow_outside_root, list(outside or []))

    def left_out_frame(self) -> pd.DataFrame:
        """What the listing left out, as excluded rows: undecodable names, links out of the root."""
        return excluded_frame(
            [
                {
                    "image_uri": printable(uri),
                    "source_label": "",
                    "reason": f"file name is not valid UTF-8 (bytes {os.fsencode(uri)!r}): rename the file",
                }
                for uri in self.undecodable
            ]
            + [{**row, "image_uri": printable(str(row["image_uri"]))} for row in self.outside]
        )

    def left_out_names(self) -> dict[str, str]:
        """File stem -> why the listing left that file out (for "image missing" messages)."""
        return {
            PurePosixPath(str(row["image_uri"])).stem: str(row["reason"])
            + (f" (to {row['target']})" if row.get("target") else "")
            for row in self.outside
        }

    def inside(self, uri: str) -> bool:
        """Is ``uri`` below the root (after resolving ``..`` and, for local files, symlinks)?"""
        if storage.is_s3(self.root) or storage.is_s3(uri):
            if not (storage.is_s3(self.root) and storage.is_s3(uri)):
                return False
            root = self.root.rstrip("/") + "/"
            return resolve_path(uri, "").startswith(root)
        root = os.path.realpath(self.root)
        return os.path.commonpath([root, os.path.realpath(uri)]) == root

    def rel(self, uri: str) -> str:
        return uri[len(self.root) :].lstrip("/") if uri.startswith(self.root) else uri

    def top_level(self, suffix: str) -> list[str]:
        return [f for f in self.files if "/" not in self.rel(f) and f.lower().endswith(suffix)]

    def image_index(self) -> dict[str, str]:
        """File stem -> URI of every image; on a clash the shallowest path wins (then the name)."""
        index: dict[str, tuple[int, str]] = {}
        clashes = 0
        for uri in self.files:
            rel = self.rel(uri)
            path = PurePosixPath(rel)
            if path.suffix.lower() not in IMAGE_EXTENSIONS or MASK_FOLDERS & {
                p.lower() for p in path.parts[:-1]
            }:
                continue
            key = (len(path.parts), rel)
            if path.stem in index:
                clashes += 1
                index[path.stem] = min(index[path.stem], key)
            else:
                index[path.stem] = key
        if clashes:
            logger.warning(
                "%d image names occur in several folders under %s: using the shallowest", clashes, self.root
            )
        return {stem: storage.join(self.root, rel) for stem, (_, rel) in index.items()}

    def mask_index(self) -> dict[str, str]:
        """Image stem -> URI of its lesion mask under a ``masks/`` (or ``mask/``) folder.

        A mask is named like its image (``masks/ISIC_0000000.png``) or with the ISIC segmentation
        suffix (``masks/ISIC_0000000_segmentation.png``); the shallowest wins on a clash.
        """
        found: dict[str, tuple[int, str]] = {}
        for uri in self.files:
            path = PurePosixPath(self.rel(uri))
            if path.suffix.lower() not in IMAGE_EXTENSIONS or not MASK_FOLDERS & {
                p.lower() for p in path.parts[:-1]
            }:
                continue
            stem = path.stem.removesuffix(MASK_SUFFIX)
            key = (len(path.parts), str(path))
            found[stem] = min(found.get(stem, key), key)
        return {stem: storage.join(self.root, rel) for stem, (_, rel) in found.items()}


def is_utf8(text: str) -> bool:
    """False for names holding undecodable bytes (Python keeps them as surrogates, PEP 383)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(text: str) -> str:
    """``text`` safe to print, log and write as UTF-8: undecodable bytes shown as ``\\xNN``."""
    return text if is_utf8(text) else os.fsencode(text).decode("utf-8", "backslashreplace")


def read_csv(uri: str) -> pd.DataFrame:
    """Read a CSV as strings ('' for empty cells) so ids like 0012 and labels keep their spelling;
    column names stripped. A file separated by semicolons or tabs is refused, naming the separator."""
    try:
        df = pd.read_csv(io.BytesIO(storage.read_bytes(uri)), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{uri} is not a readable CSV ({exc}): check the file") from exc
    df.columns = [str(c).strip() for c in df.columns]
    problem = separator_problem(uri, list(df.columns))
    if problem is not None:
        raise problem
    return df


def read_header(uri: str) -> list[str]:
    try:
        head = pd.read_csv(io.BytesIO(storage.read_bytes(uri)), dtype=str, nrows=0)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return []
    return [str(c).strip() for c in head.columns]


#: Separators a spreadsheet may write instead of commas (a European-locale Excel writes ';').
OTHER_SEPARATORS = {";": "semicolons (';')", "\t": "tabs"}


def separator_problem(uri: str, columns: list[str]) -> DataError | None:
    """The error for a CSV whose header is one column holding another separator, else None.

    Such a file is refused rather than re-read with its separator: a semicolon CSV from a
    spreadsheet usually writes decimal commas too (an age of ``52,5``), which would be misread.
    """
    if len(columns) != 1:
        return None
    for sep, said in OTHER_SEPARATORS.items():
        if sep in columns[0]:
            shown = columns[0] if len(columns[0]) <= 120 else columns[0][:117] + "..."
            return DataError(
                f"{uri} is separated by {said}, not commas: its header reads {shown!r}. Save it as a "
                "comma-separated CSV (a spreadsheet's 'CSV UTF-8 (comma delimited)', or "
                f"pandas.read_csv(path, sep={sep!r}).to_csv(path, index=False)) and check that numbers "
                "use decimal points"
            )
    return None


def lacks_columns(uri: str, data_set: str, required: tuple[str, ...], found: list[str]) -> DataError:
    """A CSV recognised as ``data_set``'s but without the columns its loader needs: name them."""
    missing = [c for c in required if c not in found]
    return DataError(
        f"{uri} looks like {data_set} but lacks column(s) {', '.join(missing)} "
        f"(it has {found}); {data_set} needs {', '.join(required)}: use the data set's published CSV"
    )


def excluded_frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for col in EXCLUDED_COLUMNS:
        if col not in df.columns:
            df[col] = pd.Series(dtype=str)
    return df[EXCLUDED_COLUMNS + [c for c in df.columns if c not in EXCLUDED_COLUMNS]]


def missing_images_error(
    source: str, missing: list[str], left_out: dict[str, str] | None = None
) -> DataError:
    """``left_out``: stem -> why the listing left a file out (a link out of the data root)."""
    shown = ", ".join(missing[:MAX_LISTED])
    more = f" and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
    why = [
        f"{n}: {left_out[PurePosixPath(n).stem]}"
        for n in missing
        if PurePosixPath(n).stem in (left_out or {})
    ]
    detail = f" ({len(why)} of them left out: {'; '.join(why[:3])})" if why else ""
    return DataError(
        f"{len(missing)} images referenced by {source} are missing: {shown}{more}{detail}. "
        "Download them beside the CSV (or fix the paths), or remove their rows"
    )


def wrong_columns(uri: str, expected: str, found: list[str]) -> DataError:
    return DataError(f"{uri} has columns {found}; expected {expected}")


# ------------------------------------------------------------------------------------ grouping
def assign_source_groups(df: pd.DataFrame) -> pd.DataFrame:
    """Connect rows sharing patient_id or lesion_id (or a manifest ``group``) and name each group."""
    keys = {
        c: ["" if pd.isna(v) else str(v).strip() for v in df[c]]
        for c in ("patient_id", "lesion_id", "group")
        if c in df
    }
    uf = UnionFind(len(df))
    for values in keys.values():
        uf.union_by_key(values)
    comp = uf.components()
    best: dict[int, tuple[int, str, str]] = {}
    for kind_rank, (col, kind) in enumerate(
        (("patient_id", "patient"), ("lesion_id", "lesion"), ("group", "group"))
    ):
        for pos, value in enumerate(keys.get(col, [])):
            if value:
                cand = (kind_rank, value, kind)
                c = int(comp[pos])
                if c not in best or cand < best[c]:
                    best[c] = cand
    out = df.copy()
    out["group_id"] = [f"{best[int(c)][2]}:{best[int(c)][1]}" if int(c) in best else "" for c in comp]
    out["group_kind"] = [best[int(c)][2] if int(c) in best else "" for c in comp]
    return out


def resolve_path(base: str, path: str) -> str:
    joined = storage.join(base, path)
    if storage.is_s3(joined):
        bucket, key = storage.split_s3(joined)
        return f"s3://{bucket}/{posixpath.normpath(key)}"
    return posixpath.normpath(joined)


def carry_metadata(out: pd.DataFrame, meta: pd.DataFrame) -> None:
    """The ISIC metadata columns as the subgroup columns of :mod:`.metadata` (same vocabulary)."""
    for src, dst in CARRY.items():
        if src in meta.columns and dst not in out.columns:
            values = meta[src]
            if dst == "age":
                out[dst] = pd.to_numeric(values, errors="coerce").to_numpy()
            elif dst == "sex":
                out[dst] = metadata.sex(values)
            elif dst == "skin_tone":
                out[dst] = metadata.fitzpatrick(values)
            elif dst == "clinic":
                out[dst] = values.astype(str).str.strip().to_numpy()
            else:
                out[dst] = values.astype(str).str.strip().str.lower().to_numpy()


def lookup_images(
    index: dict[str, str], names: list[str], source: str, tree: FileTree | None = None
) -> list[str]:
    missing = [n for n in names if n not in index]
    if missing:
        left_out = tree.left_out_names() if tree is not None else {}
        raise missing_images_error(source, [f"{n}.jpg" for n in missing], left_out)
    return [index[n] for n in names]
