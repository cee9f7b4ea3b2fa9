"""Layout ``isic2024``: the ISIC 2024 challenge (SLICE-3D) files, ``train-metadata.csv`` (``isic_id``,
``target``, ``patient_id``, ``lesion_id``, ``iddx_full`` ...) beside ``train-image.hdf5``, which holds
every image as JPEG bytes keyed by its isic_id.

The images stay in the HDF5 file: each row's URI is ``hdf5:///<folder>/train-image.hdf5/<isic_id>``
(:mod:`melanoma_mlops.storage` reads one member at a time), so 401,059 images are never all in
memory and never unpacked to 401,059 files. Only the metadata columns the pipeline uses are read.
h5py needs a local file: an ``s3://`` source must be downloaded first.

Label: ``target`` (1 = malignant, 0 = benign; anything else is excluded and reported). With
``task=melanoma`` the positive class is a melanoma in ``iddx_full`` (e.g.
``Malignant::Malignant melanocytic proliferations (Melanoma)::Melanoma Invasive``).
"""

from __future__ import annotations

import io

import pandas as pd

from melanoma_mlops import storage
from melanoma_mlops.data.sources.common import (
    FileTree,
    Loaded,
    carry_metadata,
    excluded_frame,
    missing_images_error,
    wrong_columns,
)
from melanoma_mlops.data.sources.isic import MELANOMA
from melanoma_mlops.errors import DataError

REQUIRED = ("isic_id", "target", "patient_id")
#: The metadata columns the pipeline reads (the file has ~55; most are 3D-TBP lesion measurements).
USED = (
    *REQUIRED,
    "lesion_id",
    "iddx_full",
    "iddx_1",
    "age_approx",
    "sex",
    "anatom_site_general",
    "attribution",
)
IMAGE_FILE = "train-image.hdf5"


def accepts(columns: list[str]) -> bool:
    return set(REQUIRED) <= set(columns)


def _hdf5_beside(tree: FileTree, csv: str) -> str:
    files = tree.top_level(".hdf5") + tree.top_level(".h5")
    refused = [row for row in tree.outside if str(row["image_uri"]).endswith((".hdf5", ".h5"))]
    if not files and refused:
        row = refused[0]
        raise DataError(f"{row['image_uri']} is beside {csv} but was not opened: {row['reason']}")
    if not files:
        raise DataError(
            f"{csv} is ISIC 2024 metadata, but no {IMAGE_FILE} (or other .hdf5 file) is beside it in "
            f"{tree.root}: download the challenge's {IMAGE_FILE} into that folder"
        )
    prefix = storage.name(csv).split("-", 1)[0]
    preferred = [u for u in files if storage.name(u).startswith(prefix + "-image")]
    chosen = (preferred or files)[0]
    if storage.is_s3(chosen):
        raise DataError(
            f"{chosen}: HDF5 images are read with h5py, which needs a local file; download "
            f"{storage.name(chosen)} and its CSV to a local folder and pass that folder as --data"
        )
    return chosen


def _read_metadata(csv: str) -> pd.DataFrame:
    source = csv if storage.is_local(csv) else io.BytesIO(storage.read_bytes(csv))
    try:
        return pd.read_csv(
            source, dtype=str, keep_default_na=False, usecols=lambda c: str(c).strip() in USED
        ).rename(columns=lambda c: str(c).strip())
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{csv} is not a readable CSV ({exc}): check the file") from exc


def load(tree: FileTree, task: str, csv: str) -> Loaded:
    """ISIC 2024: label = target; images are members of the HDF5 file beside the CSV."""
    import h5py

    meta = _read_metadata(csv)
    if not accepts(list(meta.columns)):
        raise wrong_columns(csv, ", ".join(REQUIRED) + " (ISIC 2024 train-metadata.csv)", list(meta.columns))
    if task == "melanoma" and "iddx_full" not in meta.columns:
        raise DataError(
            f"task 'melanoma' needs the iddx_full column (the full diagnosis) but {csv} lacks it: use "
            "the challenge's complete train-metadata.csv, or task='malignant'"
        )
    h5 = _hdf5_beside(tree, csv)
    ids = meta["isic_id"].str.strip()
    with h5py.File(h5, "r") as f:
        members = set(f.keys())
    missing = [i for i in ids if i not in members]
    if missing:
        raise missing_images_error(csv, [f"{h5}/{i}" for i in missing])
    target = meta["target"].str.strip()
    keep = target.isin(["0", "1"]).to_numpy()
    prefix = storage.hdf5_uri(h5, "")
    excluded_rows = [
        {
            "image_uri": prefix + ids.iat[pos],
            "source_label": target.iat[pos],
            "reason": f"target {target.iat[pos]!r} is not 0/1: excluded, never folded into benign",
            "row": int(pos) + 1,
        }
        for pos in (~keep).nonzero()[0]
    ]
    kept = meta[keep].reset_index(drop=True)
    kept_ids = ids[keep].reset_index(drop=True)
    if task == "melanoma":
        labels = kept["iddx_full"].str.contains(MELANOMA).astype(int).tolist()
        source_labels = kept["iddx_full"].str.strip().tolist()
        notes = ["ISIC 2024: melanoma = 'Melanoma' in iddx_full (vs every other lesion)"]
    else:
        labels = kept["target"].str.strip().astype(int).tolist()
        source_labels = [str(y) for y in labels]
        notes = ["ISIC 2024: label = target (1 = malignant: melanoma, basal and squamous cell carcinoma)"]
    out = pd.DataFrame(
        {
            "image_uri": (prefix + kept_ids).to_numpy(),
            "label": labels,
            "source_label": source_labels,
            "isic_id": kept_ids.to_numpy(),
        }
    )
    for col in ("patient_id", "lesion_id"):
        if col in kept.columns:
            out[col] = kept[col].str.strip().to_numpy()
    carry_metadata(out, kept)
    mapping = dict(zip(source_labels, labels, strict=True)) if task == "malignant" else {}
    if task == "melanoma":
        mapping = {"Melanoma in iddx_full": 1, "anything else": 0}
    return Loaded(out, excluded_frame(excluded_rows), mapping, notes)
