"""Read a data source in any supported layout into one manifest (one row per image).

Layouts (detected automatically, or forced with ``layout=``):

``folder``
    ``benign/`` and ``malignant/`` class folders (any case), optionally inside ``train/``, ``test/``,
    ``val/`` ... as in Kaggle exports. Those source splits are merged (kept in ``source_split``)
    because we re-split by group: the exports' splits are not grouped by lesion. ``masks/<class>/``
    beside the class folders fills ``mask_uri``.
``manifest``
    A CSV ``image_path,label[,group]`` (optional ``patient_id``, ``lesion_id``, ``mask_path``);
    paths relative to the CSV's folder, absolute, or ``s3://``; label 0/1 or benign/malignant.
``isic``
    An ISIC Archive export: ``metadata.csv`` (``isic_id``, ``diagnosis_1``, ``lesion_id``,
    ``patient_id`` ...) with ``<isic_id>.jpg`` beside it.
``challenge``
    ISIC 2020 (``train.csv`` / ``ISIC_2020_Training_GroundTruth.csv``: ``image_name``, ``target``)
    or ISIC 2019 (``ISIC_2019_Training_GroundTruth.csv``: ``image`` + one-hot diagnosis columns,
    optional ``ISIC_2019_Training_Metadata.csv`` with ``lesion_id``).

Any of them may live under ``s3://bucket/prefix``: all access goes through :mod:`storage`.

Label policy: only values with a defined meaning are mapped to 0/1; everything else (ISIC
"Indeterminate", 2019 "UNK", a stray text file in a class folder) is *excluded and reported* in
``SourceResult.excluded`` with a reason, never folded into benign: an indeterminate lesion labelled
benign teaches the model that uncertain lesions are safe.

Groups: rows sharing a patient_id or a lesion_id are connected; a group is named after its patient
(``patient:<id>``) when any member has one, else its lesion (``lesion:<id>``), else ``group:<id>``
(manifest CSV), else ''. The duplicate audit later merges these with duplicate clusters.
"""

from __future__ import annotations

import io
import logging
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import pandas as pd

from . import storage
from .dedup import UnionFind
from .errors import DataError

logger = logging.getLogger(__name__)

LAYOUTS = ("folder", "manifest", "isic", "challenge")
TASKS = ("malignant", "melanoma")
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
CLASS_FOLDERS = {"benign": 0, "malignant": 1}
SPLIT_FOLDERS = frozenset({"train", "test", "val", "valid", "validation"})
MASK_FOLDERS = frozenset({"masks", "mask"})
MANIFEST_LABELS = {"0": 0, "1": 1, "benign": 0, "malignant": 1}
ISIC_LABELS = {"benign": 0, "malignant": 1}
GROUP_KINDS = ("patient", "lesion", "group", "")
EXCLUDED_COLUMNS = ["image_uri", "source_label", "reason"]
# ISIC 2019 one-hot classes. Malignant: melanoma, basal cell carcinoma, squamous cell carcinoma and
# AK. AK is a documented choice: the 2019 "AK" class holds actinic keratoses *and* Bowen's disease
# (squamous cell carcinoma in situ), lesions that are treated, not left alone; calling the class
# benign would teach the model that intraepithelial carcinoma is harmless. UNK has no diagnosis and
# is excluded.
CHALLENGE_2019_CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
CHALLENGE_2019_MALIGNANT = frozenset({"MEL", "BCC", "SCC", "AK"})
CHALLENGE_2019_EXCLUDED = frozenset({"UNK"})
# Finer ISIC diagnosis columns, coarsest first; melanoma-vs-rest reads these.
ISIC_FINE_DIAGNOSIS = ("diagnosis_2", "diagnosis_3", "diagnosis_4", "diagnosis_5", "diagnosis")
_MELANOMA = re.compile(r"(?<!non-)(?<!non )\bmelanoma\b", re.IGNORECASE)
# Metadata columns carried into the manifest when present (renamed where the value is the same).
_CARRY = {
    "age_approx": "age",
    "sex": "sex",
    "anatom_site_general": "anatom_site",
    "anatom_site_general_challenge": "anatom_site",
}
_MAX_LISTED = 10


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
class _Tree:
    """All files below the source root, listed once (one S3 listing, not one request per file)."""

    root: str
    files: list[str]

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


def _read_csv(uri: str) -> pd.DataFrame:
    """Read a CSV as strings ('' for empty cells) so ids like 0012 and labels keep their spelling."""
    try:
        return pd.read_csv(io.BytesIO(storage.read_bytes(uri)), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{uri} is not a readable CSV ({exc}): check the file") from exc


def _read_header(uri: str) -> list[str]:
    try:
        head = pd.read_csv(io.BytesIO(storage.read_bytes(uri)), dtype=str, nrows=0)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return []
    return [str(c).strip() for c in head.columns]


def _excluded(rows: list[dict[str, object]]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for col in EXCLUDED_COLUMNS:
        if col not in df.columns:
            df[col] = pd.Series(dtype=str)
    return df[EXCLUDED_COLUMNS + [c for c in df.columns if c not in EXCLUDED_COLUMNS]]


def _missing_images_error(source: str, missing: list[str]) -> DataError:
    shown = ", ".join(missing[:_MAX_LISTED])
    more = f" and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
    return DataError(
        f"{len(missing)} images referenced by {source} are missing: {shown}{more}. "
        "Download them beside the CSV (or fix the paths), or remove their rows"
    )


def _wrong_columns(uri: str, expected: str, found: list[str]) -> DataError:
    return DataError(f"{uri} has columns {found}; expected {expected}")


# ------------------------------------------------------------------------------------ grouping
def _assign_source_groups(df: pd.DataFrame) -> pd.DataFrame:
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


# -------------------------------------------------------------------------------------- layouts
def _load_folder(tree: _Tree, task: str) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int], list[str]]:
    """Class folders, optionally under train/test/val folders; masks/<class>/ fills mask_uri."""
    if task != "malignant":
        raise DataError(
            f"task {task!r} needs a diagnosis per image, which class folders under {tree.root} do not "
            "carry (only benign/malignant): use task='malignant' or an ISIC metadata export"
        )
    masks: dict[tuple[str, ...], str] = {}
    images: list[tuple[str, list[str], int, str]] = []
    excluded: list[dict[str, object]] = []
    for uri in tree.files:
        parts = tree.rel(uri).split("/")
        lowered = [p.lower() for p in parts[:-1]]
        cls_pos = next((i for i, p in enumerate(lowered) if p in CLASS_FOLDERS), None)
        suffix = PurePosixPath(parts[-1]).suffix.lower()
        if cls_pos is not None and any(p in MASK_FOLDERS for p in lowered[:cls_pos]):
            m = lowered.index(next(p for p in lowered[:cls_pos] if p in MASK_FOLDERS))
            if suffix in IMAGE_EXTENSIONS:
                key = (
                    *lowered[:m],
                    lowered[cls_pos],
                    *parts[cls_pos + 1 : -1],
                    PurePosixPath(parts[-1]).stem,
                )
                masks[key] = uri
            continue
        if cls_pos is None:
            if suffix in IMAGE_EXTENSIONS and not MASK_FOLDERS & set(lowered):
                excluded.append(
                    {
                        "image_uri": uri,
                        "source_label": "/".join(parts[:-1]),
                        "reason": "image outside a benign/ or malignant/ folder: its class is unknown",
                    }
                )
            continue
        if suffix not in IMAGE_EXTENSIONS:
            excluded.append(
                {
                    "image_uri": uri,
                    "source_label": parts[cls_pos],
                    "reason": f"not an image file (extension {suffix or 'none'!r}; accepted: "
                    f"{', '.join(sorted(IMAGE_EXTENSIONS))})",
                }
            )
            continue
        images.append((uri, parts, cls_pos, parts[cls_pos]))
    rows = []
    mapping: dict[str, int] = {}
    for uri, parts, cls_pos, cls in images:
        label = CLASS_FOLDERS[cls.lower()]
        mapping[cls] = label
        lowered = [p.lower() for p in parts[:cls_pos]]
        key = (*lowered, cls.lower(), *parts[cls_pos + 1 : -1], PurePosixPath(parts[-1]).stem)
        source_split = next((p for p in reversed(lowered) if p in SPLIT_FOLDERS), "")
        rows.append(
            {
                "image_uri": uri,
                "label": label,
                "source_label": cls,
                "mask_uri": masks.get(key, ""),
                "source_split": source_split,
            }
        )
    notes = []
    splits = sorted({r["source_split"] for r in rows if r["source_split"]})
    if splits:
        notes.append(f"merged the source's {'/'.join(splits)} folders: we re-split by group")
    return pd.DataFrame(rows), _excluded(excluded), mapping, notes


def _find_csv(tree: _Tree, layout: str, accepts: Callable[[list[str]], bool], wanted: str) -> str:
    candidates = [u for u in tree.top_level(".csv") if accepts(_read_header(u))]
    if not candidates:
        found = [storage.name(u) for u in tree.top_level(".csv")]
        raise DataError(
            f"no {wanted} found in {tree.root} for the {layout!r} layout "
            f"(CSV files there: {found or 'none'}); "
            "point --data at the folder holding it, or at the file itself"
        )
    return candidates[0]


def _resolve_path(base: str, path: str) -> str:
    joined = storage.join(base, path)
    if storage.is_s3(joined):
        bucket, key = storage.split_s3(joined)
        return f"s3://{bucket}/{posixpath.normpath(key)}"
    return posixpath.normpath(joined)


def _load_manifest(
    tree: _Tree, task: str, csv: str
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int], list[str]]:
    """A user CSV image_path,label[,group]; labels must all be in the mapping (a typo is an error)."""
    if task != "malignant":
        raise DataError(
            f"task {task!r} needs a diagnosis column; the manifest CSV {csv} only has a 0/1 label"
        )
    df = _read_csv(csv)
    df.columns = [str(c).strip() for c in df.columns]
    if not {"image_path", "label"} <= set(df.columns):
        raise _wrong_columns(
            csv, "image_path,label and optionally group, patient_id, lesion_id, mask_path", list(df.columns)
        )
    base = storage.parent(csv)
    labels = []
    bad: list[str] = []
    mapping: dict[str, int] = {}
    for i, value in enumerate(df["label"]):
        norm = str(value).strip().lower()
        if norm not in MANIFEST_LABELS:
            bad.append(f"{value!r} in row {i + 1} (line {i + 2})")
            labels.append(-1)
            continue
        mapping[str(value).strip()] = MANIFEST_LABELS[norm]
        labels.append(MANIFEST_LABELS[norm])
    if bad:
        more = f" and {len(bad) - _MAX_LISTED} more rows" if len(bad) > _MAX_LISTED else ""
        raise DataError(
            f"{csv}: label {', '.join(bad[:_MAX_LISTED])}{more} is not one of 0, 1, benign, malignant; "
            "fix the value (an uncertain diagnosis belongs in a separate file, not in benign)"
        )
    empty = [i + 1 for i, p in enumerate(df["image_path"]) if not str(p).strip()]
    if empty:
        raise DataError(
            f"{csv}: image_path is empty in rows {empty[:_MAX_LISTED]}: fill or remove those rows"
        )
    uris = [_resolve_path(base, str(p).strip()) for p in df["image_path"]]
    known = set(tree.files)
    # Files under the CSV's folder were listed once; only paths outside it cost a request each.
    missing = [u for u in uris if u not in known and (u.startswith(tree.root + "/") or not storage.exists(u))]
    if missing:
        raise _missing_images_error(csv, [storage.name(u) for u in missing])
    out = pd.DataFrame(
        {"image_uri": uris, "label": labels, "source_label": [str(v).strip() for v in df["label"]]}
    )
    for col in ("group", "patient_id", "lesion_id"):
        if col in df.columns:
            out[col] = df[col].astype(str).str.strip().to_numpy()
    if "mask_path" in df.columns:
        out["mask_uri"] = [
            _resolve_path(base, str(p).strip()) if str(p).strip() else "" for p in df["mask_path"]
        ]
    reserved = set(out.columns) | {
        "image_path",
        "label",
        "split",
        "sha256",
        "group_id",
        "group_kind",
        "mask_path",
    }
    for col in df.columns:
        if col not in reserved:
            out[col] = df[col].to_numpy()
    if "split" in df.columns:
        out["source_split"] = df["split"].to_numpy()
    return out, _excluded([]), mapping, []


def _isic_label_column(columns: list[str]) -> str | None:
    return next((c for c in ("diagnosis_1", "benign_malignant") if c in columns), None)


def _carry_metadata(out: pd.DataFrame, meta: pd.DataFrame) -> None:
    for src, dst in _CARRY.items():
        if src in meta.columns and dst not in out.columns:
            values = meta[src]
            out[dst] = (
                pd.to_numeric(values, errors="coerce").to_numpy() if dst == "age" else values.to_numpy()
            )


def _lookup_images(index: dict[str, str], names: list[str], source: str) -> list[str]:
    missing = [n for n in names if n not in index]
    if missing:
        raise _missing_images_error(source, [f"{n}.jpg" for n in missing])
    return [index[n] for n in names]


def _load_isic(
    tree: _Tree, task: str, csv: str
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int], list[str]]:
    """ISIC Archive export: diagnosis_1 Benign/Malignant; Indeterminate and unknown values excluded."""
    meta = _read_csv(csv)
    meta.columns = [str(c).strip() for c in meta.columns]
    label_col = _isic_label_column(list(meta.columns))
    if "isic_id" not in meta.columns or label_col is None:
        raise _wrong_columns(
            csv,
            "isic_id, diagnosis_1 (Benign/Malignant/Indeterminate; older exports: benign_malignant), "
            "and optionally lesion_id, patient_id, diagnosis_2..5, age_approx",
            list(meta.columns),
        )
    fine_cols = [c for c in ISIC_FINE_DIAGNOSIS if c in meta.columns]
    if task == "melanoma":
        if not fine_cols:
            raise DataError(
                "task 'melanoma' needs a finer diagnosis column naming Melanoma "
                f"({', '.join(ISIC_FINE_DIAGNOSIS)}) "
                f"but {csv} has only {list(meta.columns)}: export the metadata with the full diagnosis "
                "hierarchy, or use task='malignant'"
            )
        if not any(_MELANOMA.search(str(v)) for c in fine_cols for v in meta[c]):
            raise DataError(
                f"task 'melanoma': no value of {fine_cols} in {csv} names Melanoma, so melanoma-vs-rest "
                "would have no positive class; use task='malignant' or a metadata export that includes "
                "melanomas"
            )
    coarse = meta[label_col].astype(str).str.strip()
    index = tree.image_index()
    keep = coarse.str.lower().isin(list(ISIC_LABELS)).to_numpy().copy()
    excluded_rows: list[dict[str, object]] = []
    for pos in (~keep).nonzero()[0]:
        value = coarse.iat[pos]
        excluded_rows.append(
            {
                "image_uri": index.get(meta["isic_id"].iat[pos], meta["isic_id"].iat[pos]),
                "source_label": value,
                "reason": f"{label_col} {value!r} is not Benign/Malignant (indeterminate or missing): "
                "excluded, never folded into benign",
                "row": int(pos) + 1,
            }
        )
    if task == "melanoma":
        # A malignant lesion without a finer diagnosis may or may not be a melanoma: calling it
        # "rest" would put unlabelled melanomas among the negatives.
        fine_known = (
            meta[fine_cols].astype(str).apply(lambda col: col.str.strip() != "").any(axis=1).to_numpy()
        )
        vague = keep & ~fine_known & (coarse.str.lower() == "malignant").to_numpy()
        for pos in vague.nonzero()[0]:
            excluded_rows.append(
                {
                    "image_uri": index.get(meta["isic_id"].iat[pos], meta["isic_id"].iat[pos]),
                    "source_label": coarse.iat[pos],
                    "reason": f"malignant without a finer diagnosis in {fine_cols}: "
                    "whether it is a melanoma is unknown",
                    "row": int(pos) + 1,
                }
            )
        keep &= ~vague
    kept = meta[keep].reset_index(drop=True)
    uris = _lookup_images(index, list(kept["isic_id"]), csv)
    mapping: dict[str, int] = {}
    if task == "melanoma":
        parts = kept[[label_col, *fine_cols]].astype(str).apply(lambda col: col.str.strip())
        hierarchy = [" > ".join(v for v in row if v) for row in parts.itertuples(index=False)]
        labels = (
            parts[fine_cols].apply(lambda col: col.str.contains(_MELANOMA)).any(axis=1).astype(int).tolist()
        )
        source_labels = hierarchy
    else:
        source_labels = list(kept[label_col].astype(str).str.strip())
        labels = [ISIC_LABELS[v.lower()] for v in source_labels]
    for s, y in zip(source_labels, labels, strict=True):
        mapping[s] = y
    out = pd.DataFrame({"image_uri": uris, "label": labels, "source_label": source_labels})
    out["isic_id"] = kept["isic_id"].to_numpy()
    for col in ("patient_id", "lesion_id", *fine_cols):
        if col in kept.columns:
            out[col] = kept[col].astype(str).str.strip().to_numpy()
    _carry_metadata(out, kept)
    notes = [f"label from {label_col}" + (f"; melanoma from {fine_cols}" if task == "melanoma" else "")]
    return out, _excluded(excluded_rows), mapping, notes


def _is_2020(columns: list[str]) -> bool:
    return {"image_name", "target"} <= set(columns)


def _is_2019(columns: list[str]) -> bool:
    return {"image", "MEL", "NV"} <= set(columns)


def _load_challenge(
    tree: _Tree, task: str, csv: str
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int], list[str]]:
    """ISIC 2020 (target column) or 2019 (one-hot diagnosis) challenge training CSVs."""
    gt = _read_csv(csv)
    gt.columns = [str(c).strip() for c in gt.columns]
    cols = list(gt.columns)
    index = tree.image_index()
    excluded_rows: list[dict[str, object]] = []
    if _is_2020(cols):
        target = gt["target"].astype(str).str.strip()
        keep = target.isin(["0", "1"]).to_numpy()
        for pos in (~keep).nonzero()[0]:
            excluded_rows.append(
                {
                    "image_uri": index.get(gt["image_name"].iat[pos], gt["image_name"].iat[pos]),
                    "source_label": target.iat[pos],
                    "reason": f"target {target.iat[pos]!r} is not 0/1",
                    "row": int(pos) + 1,
                }
            )
        kept = gt[keep].reset_index(drop=True)
        names = list(kept["image_name"].astype(str).str.strip())
        labels = [int(v) for v in kept["target"].astype(str).str.strip()]
        if "benign_malignant" in kept.columns:
            source_labels = list(kept["benign_malignant"].astype(str).str.strip())
        else:
            source_labels = [str(y) for y in labels]
        notes = [
            "ISIC 2020: label = target (1 = melanoma; the 2020 set's only malignant class), for both tasks"
        ]
        meta = kept
    elif _is_2019(cols):
        classes = [c for c in CHALLENGE_2019_CLASSES if c in cols]
        onehot = gt[classes].apply(pd.to_numeric, errors="coerce").fillna(0.0).to_numpy() >= 0.5
        positives = set(["MEL"] if task == "melanoma" else CHALLENGE_2019_MALIGNANT)
        keep_list, names, labels, source_labels = [], [], [], []
        for pos in range(len(gt)):
            hits = [classes[k] for k in onehot[pos].nonzero()[0]]
            name = str(gt["image"].iat[pos]).strip()
            if len(hits) != 1 or hits[0] in CHALLENGE_2019_EXCLUDED:
                reason = (
                    f"diagnosis {hits[0]} (unknown) is excluded, never folded into benign"
                    if len(hits) == 1
                    else f"{len(hits)} diagnosis columns set ({hits}); expected exactly one"
                )
                excluded_rows.append(
                    {
                        "image_uri": index.get(name, name),
                        "source_label": "+".join(hits),
                        "reason": reason,
                        "row": pos + 1,
                    }
                )
                continue
            keep_list.append(pos)
            names.append(name)
            labels.append(int(hits[0] in positives))
            source_labels.append(hits[0])
        meta = gt.iloc[keep_list].reset_index(drop=True)
        meta_csv = next(
            (
                u
                for u in tree.top_level(".csv")
                if storage.name(u).lower() == "isic_2019_training_metadata.csv"
            ),
            None,
        )
        if meta_csv is not None:
            extra = _read_csv(meta_csv)
            extra.columns = [str(c).strip() for c in extra.columns]
            if "image" not in extra.columns:
                raise _wrong_columns(
                    meta_csv, "image, lesion_id, age_approx, sex, anatom_site_general", list(extra.columns)
                )
            extra = extra.drop_duplicates("image").set_index("image")
            meta = meta.join(extra.drop(columns=[c for c in extra.columns if c in meta.columns]), on="image")
            meta = meta.fillna("")
        notes = [
            "ISIC 2019: "
            + (
                "melanoma = MEL"
                if task == "melanoma"
                else f"malignant = {', '.join(sorted(CHALLENGE_2019_MALIGNANT))}"
            )
            + "; UNK excluded"
            + ("" if meta_csv is not None else "; no ISIC_2019_Training_Metadata.csv, so no lesion groups")
        ]
    else:
        raise _wrong_columns(
            csv,
            "ISIC 2020 image_name,patient_id,target[,diagnosis,benign_malignant] or ISIC 2019 "
            f"image,{','.join(CHALLENGE_2019_CLASSES)}",
            cols,
        )
    uris = _lookup_images(index, names, csv)
    mapping = dict(zip(source_labels, labels, strict=True))
    out = pd.DataFrame(
        {"image_uri": uris, "label": labels, "source_label": source_labels, "image_name": names}
    )
    for col in ("patient_id", "lesion_id", "diagnosis"):
        if col in meta.columns:
            out[col] = meta[col].astype(str).str.strip().to_numpy()
    _carry_metadata(out, meta)
    return out, _excluded(excluded_rows), mapping, notes


# ------------------------------------------------------------------------------------- detection
def _detect(tree: _Tree) -> tuple[str, str]:
    """(layout, csv) for a folder: a known CSV schema at the top wins over class folders."""
    headers = {u: _read_header(u) for u in tree.top_level(".csv")}
    for layout, accepts in (
        ("isic", lambda c: "isic_id" in c and _isic_label_column(c) is not None),
        ("challenge", lambda c: _is_2020(c) or _is_2019(c)),
        ("manifest", lambda c: {"image_path", "label"} <= set(c)),
    ):
        for uri, cols in headers.items():
            if accepts(cols):
                return layout, uri
    if any(p.lower() in CLASS_FOLDERS for f in tree.files for p in tree.rel(f).split("/")[:-1]):
        return "folder", ""
    examples = [tree.rel(f) for f in tree.files[:5]]
    raise DataError(
        f"cannot tell the layout of {tree.root}: found no benign/ or malignant/ folder and no CSV with known "
        f"columns (files like {examples}). Expected one of: class folders benign/ malignant/; a manifest "
        "CSV image_path,label; an ISIC metadata.csv (isic_id, diagnosis_1); ISIC 2019/2020 challenge CSVs"
    )


def _csv_for(tree: _Tree, layout: str) -> str:
    if layout == "isic":
        return _find_csv(
            tree,
            layout,
            lambda c: "isic_id" in c and _isic_label_column(c) is not None,
            "metadata.csv (isic_id, diagnosis_1)",
        )
    if layout == "challenge":
        return _find_csv(
            tree,
            layout,
            lambda c: _is_2020(c) or _is_2019(c),
            "challenge CSV (2020 train.csv with image_name,target; 2019 ISIC_2019_Training_GroundTruth.csv)",
        )
    return _find_csv(
        tree, layout, lambda c: {"image_path", "label"} <= set(c), "manifest CSV (image_path,label)"
    )


def load_source(data: str, layout: str = "auto", task: str = "malignant") -> SourceResult:
    """Read ``data`` (folder, CSV file or s3:// prefix) into a manifest; see the module docstring."""
    if layout not in ("auto", *LAYOUTS):
        raise DataError(f"layout {layout!r} is not one of auto, {', '.join(LAYOUTS)}")
    if task not in TASKS:
        raise DataError(f"task {task!r} is not one of {', '.join(TASKS)}")
    if not str(data).strip():
        raise DataError("no data source given: pass a folder, a CSV file or an s3://bucket/prefix")
    source = storage.normalize(data)
    if not storage.exists(source):
        raise DataError(f"data path {data} does not exist: check the path (or bucket/prefix) and try again")
    csv = ""
    if storage.is_dir(source):
        root = source
    else:
        if not source.lower().endswith(".csv"):
            raise DataError(f"data path {data} is a file but not a CSV: pass the folder or the metadata CSV")
        csv, root = source, storage.parent(source)
    files = storage.list_files(root)
    if not files:
        raise DataError(
            f"{root} is empty: no images found (expected benign/ and malignant/ folders or a CSV)"
        )
    tree = _Tree(root, files)
    if csv:
        cols = _read_header(csv)
        if layout == "auto":
            if "isic_id" in cols:
                layout = "isic"
            elif _is_2020(cols) or _is_2019(cols):
                layout = "challenge"
            else:
                layout = "manifest"
    elif layout == "auto":
        layout, csv = _detect(tree)
    elif layout != "folder":
        csv = _csv_for(tree, layout)

    logger.info("reading %s as layout %r (task %s)%s", root, layout, task, f" from {csv}" if csv else "")
    if layout == "folder":
        manifest, excluded, mapping, notes = _load_folder(tree, task)
    elif layout == "manifest":
        manifest, excluded, mapping, notes = _load_manifest(tree, task, csv)
    elif layout == "isic":
        manifest, excluded, mapping, notes = _load_isic(tree, task, csv)
    else:
        manifest, excluded, mapping, notes = _load_challenge(tree, task, csv)

    if manifest.empty:
        detail = (
            f" ({len(excluded)} files excluded, e.g. {excluded['reason'].iat[0]})" if len(excluded) else ""
        )
        raise DataError(f"no usable images found in {root} with layout {layout!r}{detail}")
    manifest = _assign_source_groups(manifest)
    for col in ("mask_uri", "patient_id", "lesion_id"):
        if col in manifest.columns:
            manifest[col] = manifest[col].fillna("").astype(str)
    manifest["label"] = manifest["label"].astype(int)
    front = ["image_uri", "label", "source_label", "group_id", "group_kind"]
    manifest = manifest[front + [c for c in manifest.columns if c not in front]].reset_index(drop=True)
    classes = set(manifest["label"].unique())
    if len(classes) < 2:
        only = "malignant" if 1 in classes else "benign"
        raise DataError(
            f"only {only} images found in {root} ({len(manifest)} images, layout {layout!r}): a classifier "
            "needs both benign and malignant examples; check the class folders / label column"
        )
    result = SourceResult(
        manifest=manifest,
        layout=layout,
        excluded=excluded,
        label_mapping=mapping,
        source=root,
        task=task,
        notes=notes,
    )
    logger.info("source summary: %s", result.summary())
    for note in notes:
        logger.info("source note: %s", note)
    if len(excluded):
        logger.warning(
            "%d files/rows excluded by the label policy: %s",
            len(excluded),
            excluded["reason"].value_counts().to_dict(),
        )
    return result
