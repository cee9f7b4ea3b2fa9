"""The layout table: the one place that says how each layout is recognised, found and loaded.

Detection (a folder with ``--layout auto``), CSV lookup (``--layout isic`` on a folder), loading
and the "cannot tell" messages all read :data:`TABLE`, so adding a layout is one module plus one
row here. CSV layouts are tried in table order (a known CSV schema at the top of the folder wins
over class folders). Each row says what its CSV needs (``needs``), which header it reads
(``accepts``: every column the loader needs) and which header is recognisably its own even when a
column is missing (``claims``), so that the loader can name the missing column instead of a
generic "cannot tell".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from melanoma_mlops import storage
from melanoma_mlops.data.sources import (
    bcn20000,
    challenge,
    ddi,
    fitzpatrick17k,
    folder,
    ham10000,
    isic,
    isic2024,
    manifest_csv,
    pad_ufes_20,
)
from melanoma_mlops.data.sources.common import FileTree, Loaded, read_header, separator_problem
from melanoma_mlops.errors import DataError


@dataclass(frozen=True)
class Layout:
    name: str
    #: The CSV this layout reads and the columns it needs, in words (for messages); for a
    #: CSV-less layout, what the folder needs.
    needs: str
    load: Callable[[FileTree, str, str], Loaded]
    #: Does a CSV header belong to this layout (strictly: every column the loader needs)?
    accepts: Callable[[list[str]], bool] | None = None
    #: Looser: columns only this layout's CSV has; such a CSV is read as this layout, whose
    #: loader then names what is missing.
    claims: Callable[[list[str]], bool] | None = None


TABLE: tuple[Layout, ...] = (
    # Before "isic": its CSV has isic_id too, which "isic" claims.
    Layout(
        "isic2024",
        "ISIC 2024 train-metadata.csv (isic_id, target, patient_id) beside train-image.hdf5",
        isic2024.load,
        isic2024.accepts,
        isic2024.accepts,
    ),
    Layout(
        "isic",
        "metadata.csv (isic_id, diagnosis_1)",
        isic.load,
        isic.accepts,
        isic.claims,
    ),
    Layout(
        "challenge",
        "ISIC 2020 train.csv / ISIC_2020_Training_GroundTruth.csv (image_name, patient_id, target) or "
        "ISIC 2019 ISIC_2019_Training_GroundTruth.csv (image, MEL, NV, ... one-hot)",
        challenge.load,
        challenge.accepts,
        challenge.claims,
    ),
    Layout(
        "ham10000",
        "HAM10000_metadata.csv (image_id, dx; lesion_id, dx_type, age, sex, localization)",
        ham10000.load,
        ham10000.accepts,
        ham10000.claims,
    ),
    Layout(
        "bcn20000",
        "BCN20000 bcn_20k_train.csv (bcn_filename, diagnosis; lesion_id, age_approx, sex, ...)",
        bcn20000.load,
        bcn20000.accepts,
        bcn20000.claims,
    ),
    Layout(
        "pad-ufes-20",
        "PAD-UFES-20 metadata.csv (img_id, diagnostic; patient_id, lesion_id, fitspatrick, region, ...)",
        pad_ufes_20.load,
        pad_ufes_20.accepts,
        pad_ufes_20.claims,
    ),
    Layout(
        "ddi",
        "DDI ddi_metadata.csv (DDI_file, malignant, disease; skin_tone)",
        ddi.load,
        ddi.accepts,
        ddi.claims,
    ),
    Layout(
        "fitzpatrick17k",
        "fitzpatrick17k.csv (md5hash, label, nine_partition_label, three_partition_label; fitzpatrick_scale)",
        fitzpatrick17k.load,
        fitzpatrick17k.accepts,
        fitzpatrick17k.claims,
    ),
    Layout("manifest", "manifest CSV (image_path, label)", manifest_csv.load, manifest_csv.accepts),
    Layout("folder", "class folders benign/ and malignant/ (no CSV)", folder.load),
)
NAMES = tuple(layout.name for layout in TABLE)
_BY_NAME = {layout.name: layout for layout in TABLE}
#: Metadata files some publishers ship without the .csv extension (read as CSV).
BARE_CSV_NAMES = (ham10000.BARE_NAME,)
MAX_COLUMNS_SHOWN = 12


def get(name: str) -> Layout:
    if name not in _BY_NAME:
        raise DataError(f"layout {name!r} is not one of auto, {', '.join(NAMES)}")
    return _BY_NAME[name]


def is_csv_name(uri: str) -> bool:
    """A file read as CSV: ``*.csv`` or a known metadata file shipped without an extension."""
    return uri.lower().endswith(".csv") or storage.name(uri) in BARE_CSV_NAMES


def csv_files(tree: FileTree) -> list[str]:
    """The CSVs at the top of the source (the only place a layout's metadata file is looked for)."""
    return [f for f in tree.files if "/" not in tree.rel(f) and is_csv_name(f)]


def needs_text() -> str:
    """What each layout needs, one per line (the tail of the "cannot tell" messages)."""
    return "".join(f"\n  {layout.name}: {layout.needs}" for layout in TABLE)


def _columns_text(columns: list[str]) -> str:
    shown = columns[:MAX_COLUMNS_SHOWN]
    more = f", ... ({len(columns)} columns)" if len(columns) > MAX_COLUMNS_SHOWN else ""
    return f"[{', '.join(shown)}{more}]" if columns else "no readable header"


def of_csv(csv: str, columns: list[str]) -> Layout:
    """The layout of a CSV given directly as the data source (its header accepted, else claimed)."""
    problem = separator_problem(csv, columns)
    if problem is not None:
        raise problem
    found = _first({csv: columns}, "accepts") or _first({csv: columns}, "claims")
    if found is not None:
        return found[0]
    raise DataError(
        f"{csv} has columns {columns}; expected image_path,label (a manifest CSV) or the CSV of a "
        f"published data set (--layout NAME reads it as one of them). Each layout needs:{needs_text()}"
    )


def _raise_separator_problem(headers: dict[str, list[str]]) -> None:
    """A CSV separated by semicolons or tabs gets its own message (it is no layout's as it stands)."""
    for uri, cols in headers.items():
        problem = separator_problem(uri, cols)
        if problem is not None:
            raise problem


def find_csv(tree: FileTree, layout: Layout) -> str:
    """The top-level CSV of ``tree`` that ``layout`` reads ('' for a CSV-less layout)."""
    if layout.accepts is None:
        return ""
    headers = {u: read_header(u) for u in csv_files(tree)}
    candidates = [u for u, cols in headers.items() if layout.accepts(cols)]
    if candidates:
        return candidates[0]
    claimed = [u for u, cols in headers.items() if layout.claims is not None and layout.claims(cols)]
    if claimed:  # its loader names the missing column
        return claimed[0]
    _raise_separator_problem(headers)
    found = [f"{storage.name(u)} {_columns_text(cols)}" for u, cols in headers.items()]
    raise DataError(
        f"no {layout.needs} found in {tree.root} for the {layout.name!r} layout "
        f"(CSV files there: {'; '.join(found) or 'none'}); "
        "point --data at the folder holding it, or at the file itself"
    )


def _first(headers: dict[str, list[str]], test: str) -> tuple[Layout, str] | None:
    """The first (layout, csv) in table order whose ``test`` (accepts / claims) passes."""
    for layout in TABLE:
        check = getattr(layout, test)
        if check is None:
            continue
        for uri, cols in headers.items():
            if check(cols):
                return layout, uri
    return None


def detect(tree: FileTree) -> tuple[Layout, str]:
    """(layout, csv) for a folder: a known CSV schema at the top wins over class folders, which win
    over a CSV that is recognisably one data set's but lacks a column (its loader names it)."""
    headers = {u: read_header(u) for u in csv_files(tree)}
    found = _first(headers, "accepts")
    if found is not None:
        return found
    if folder.claims(tree):
        return get("folder"), ""
    found = _first(headers, "claims")
    if found is not None:
        return found
    _raise_separator_problem(headers)
    examples = [tree.rel(f) for f in tree.files[:5]]
    listed = "; ".join(f"{storage.name(u)} has columns {_columns_text(cols)}" for u, cols in headers.items())
    raise DataError(
        f"cannot tell the layout of {tree.root}: found no benign/ or malignant/ folder and no CSV with "
        f"known columns ({listed or 'no CSV at the top of the folder'}; files like {examples}); "
        f"--layout NAME reads it as one of them. Each layout needs:{needs_text()}"
    )
