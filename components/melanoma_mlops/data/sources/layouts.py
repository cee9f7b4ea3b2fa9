"""The layout table: the one place that says how each layout is recognised, found and loaded.

Detection (a folder with ``--layout auto``), CSV lookup (``--layout isic`` on a folder) and loading
all read :data:`TABLE`, so adding a layout is one module plus one row here. CSV layouts are tried
in table order (a known CSV schema at the top of the folder wins over class folders).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from melanoma_mlops import storage
from melanoma_mlops.data.sources import challenge, folder, isic, isic2024, manifest_csv
from melanoma_mlops.data.sources.common import FileTree, Loaded, read_header
from melanoma_mlops.errors import DataError


@dataclass(frozen=True)
class Layout:
    name: str
    #: The CSV this layout reads, in words (for "not found" messages); "" for a CSV-less layout.
    wanted: str
    load: Callable[[FileTree, str, str], Loaded]
    #: Does a CSV header belong to this layout (strictly: every column the loader needs)?
    accepts: Callable[[list[str]], bool] | None = None
    #: Looser: a CSV passed directly is read as this layout, so its loader names what is missing.
    claims: Callable[[list[str]], bool] | None = None


TABLE: tuple[Layout, ...] = (
    # Before "isic": its CSV has isic_id too, which "isic" claims when a CSV is passed directly.
    Layout(
        "isic2024",
        "ISIC 2024 train-metadata.csv (isic_id, target, patient_id) beside train-image.hdf5",
        isic2024.load,
        isic2024.accepts,
        isic2024.accepts,
    ),
    Layout("isic", "metadata.csv (isic_id, diagnosis_1)", isic.load, isic.accepts, isic.claims),
    Layout(
        "challenge",
        "challenge CSV (2020 train.csv with image_name,target; 2019 ISIC_2019_Training_GroundTruth.csv)",
        challenge.load,
        challenge.accepts,
        challenge.accepts,
    ),
    Layout(
        "manifest", "manifest CSV (image_path,label)", manifest_csv.load, manifest_csv.accepts, lambda c: True
    ),
    Layout("folder", "", folder.load),
)
NAMES = tuple(layout.name for layout in TABLE)
_BY_NAME = {layout.name: layout for layout in TABLE}


def get(name: str) -> Layout:
    if name not in _BY_NAME:
        raise DataError(f"layout {name!r} is not one of auto, {', '.join(NAMES)}")
    return _BY_NAME[name]


def of_csv(columns: list[str]) -> Layout:
    """The layout of a CSV given directly as the data source (the first that claims its header)."""
    return next(layout for layout in TABLE if layout.claims is not None and layout.claims(columns))


def find_csv(tree: FileTree, layout: Layout) -> str:
    """The top-level CSV of ``tree`` that ``layout`` reads ('' for a CSV-less layout)."""
    if layout.accepts is None:
        return ""
    candidates = [u for u in tree.top_level(".csv") if layout.accepts(read_header(u))]
    if not candidates:
        found = [storage.name(u) for u in tree.top_level(".csv")]
        raise DataError(
            f"no {layout.wanted} found in {tree.root} for the {layout.name!r} layout "
            f"(CSV files there: {found or 'none'}); "
            "point --data at the folder holding it, or at the file itself"
        )
    return candidates[0]


def detect(tree: FileTree) -> tuple[Layout, str]:
    """(layout, csv) for a folder: a known CSV schema at the top wins over class folders."""
    headers = {u: read_header(u) for u in tree.top_level(".csv")}
    for layout in TABLE:
        if layout.accepts is None:
            continue
        for uri, cols in headers.items():
            if layout.accepts(cols):
                return layout, uri
    if folder.claims(tree):
        return get("folder"), ""
    examples = [tree.rel(f) for f in tree.files[:5]]
    raise DataError(
        f"cannot tell the layout of {tree.root}: found no benign/ or malignant/ folder and no CSV with known "
        f"columns (files like {examples}). Expected one of: class folders benign/ malignant/; a manifest "
        "CSV image_path,label; an ISIC metadata.csv (isic_id, diagnosis_1); ISIC 2019/2020 challenge CSVs"
    )
