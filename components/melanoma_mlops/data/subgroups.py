"""The subgroups performance is reported by, declared once: which manifest columns carry them, how
their values are read, and which slice of each a row falls into.

Reporting guidelines for medical-imaging AI (CLAIM 2024, TRIPOD+AI 2024) ask for performance by sex,
age, anatomical site and skin tone, and by the site or device an image came from. Every data layout
maps its own metadata onto the manifest columns of :data:`SUBGROUPS` (ISIC ``age_approx`` ->
``age``, ``anatom_site_general`` -> ``anatom_site``; a Fitzpatrick type or a data set's own
skin-tone scale -> ``skin_tone``; an institution -> ``clinic``; a camera or dermatoscope ->
``device``). The sliced evaluation (:mod:`melanoma_mlops.evaluation.subgroups`), the gate's
per-subgroup comparison and the model card read the same table, so a layout that fills one of these
columns is sliced by it with no other change.

A missing value (an empty cell, ``unknown``, NaN) is a slice of its own, ``unknown``: rows are never
dropped, and a model that fails where the metadata is missing must show it. A column the data set
lacks is said so (:func:`lacking`): "no skin-tone information: performance across skin tones unknown".
Pure functions on a manifest (pandas only).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pandas as pd

from melanoma_mlops.data.sources import metadata

#: The slice of rows whose value is missing (kept, never dropped).
UNKNOWN = "unknown"
#: Cell values read as missing (after stripping and lower-casing).
MISSING_VALUES = frozenset({"", "nan", "none", "null", "na", "n/a", "unknown", "unk", "?", "-"})


@dataclass(frozen=True)
class Subgroup:
    """One way of slicing: the manifest column, the slice family's name, and what lacking it means."""

    column: str
    #: The family's name in slice keys (``age_band=50-69``), tables and MLflow names.
    name: str
    #: For people: "sex", "age band", ...
    label: str
    #: What the card says when the data set has no such information.
    lacking: str


SUBGROUPS: tuple[Subgroup, ...] = (
    Subgroup("sex", "sex", "sex", "no sex information: performance by sex unknown"),
    Subgroup("age", "age_band", "age band", "no age information: performance by age unknown"),
    Subgroup(
        "anatom_site",
        "anatom_site",
        "anatomical site",
        "no anatomical-site information: performance by body site unknown",
    ),
    Subgroup(
        "skin_tone",
        "skin_tone",
        "skin tone",
        "no skin-tone information: performance across skin tones unknown",
    ),
    Subgroup("clinic", "clinic", "clinic", "no clinic/source information: performance by source unknown"),
    Subgroup("device", "device", "device", "no device information: performance by camera/device unknown"),
)
#: The manifest columns that carry subgroups (what a layout maps its metadata onto).
SUBGROUP_COLUMNS = tuple(s.column for s in SUBGROUPS)
_BY_NAME = {s.name: s for s in SUBGROUPS}


def by_name(name: str) -> Subgroup:
    return _BY_NAME[name]


def age_band_labels(edges: tuple[int, ...]) -> list[str]:
    """``(30, 50, 70)`` -> ``['<30', '30-49', '50-69', '>=70']`` (whole years; an edge starts its band)."""
    inner = [f"{a}-{b - 1}" for a, b in itertools.pairwise(edges)]
    return [f"<{edges[0]}", *inner, f">={edges[-1]}"]


def age_band(age: object, edges: tuple[int, ...]) -> str:
    """The band of one age in years (``unknown`` when missing or not a number)."""
    try:
        years = float(str(age).strip())
    except ValueError:
        return UNKNOWN
    if math.isnan(years) or years < 0:
        return UNKNOWN
    labels = age_band_labels(edges)
    for i, edge in enumerate(edges):
        if years < edge:
            return labels[i]
    return labels[-1]


def normalise(column: str, value: object) -> str:
    """One cell as its slice: stripped, lower-cased categories, ``unknown`` when missing; sex and
    Fitzpatrick types in the layouts' vocabulary (:mod:`melanoma_mlops.data.sources.metadata`: ``F``
    -> ``female``, ``3.0`` or ``iii`` -> ``III``), so a manifest CSV's cells and a layout's fall into
    one slice; another skin-tone scale's values are kept (``3.0`` -> ``3`` when not a Fitzpatrick
    type)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return UNKNOWN
    text = str(value).strip()
    if text.lower() in MISSING_VALUES:
        return UNKNOWN
    if column == "sex":
        return metadata.sex([text])[0] or text.lower()
    if column == "skin_tone":
        fitzpatrick = metadata.fitzpatrick([text])[0]
        if fitzpatrick:
            return fitzpatrick
        try:
            number = float(text)
        except ValueError:
            return text.upper() if len(text) <= 4 else text
        return str(int(number)) if number.is_integer() else text
    return text.lower() if column == "anatom_site" else text


def present(df: pd.DataFrame) -> list[Subgroup]:
    """The subgroups whose column the manifest has with at least one known value."""
    return [s for s in SUBGROUPS if s.column in df.columns and _known(df[s.column], s.column).any()]


def _known(values: pd.Series, column: str) -> pd.Series:
    return values.map(lambda v: normalise(column, v)) != UNKNOWN


def lacking(df: pd.DataFrame) -> list[Subgroup]:
    """The subgroups the manifest says nothing about (no column, or a column with no known value)."""
    have = {s.name for s in present(df)}
    return [s for s in SUBGROUPS if s.name not in have]


def slice_frame(df: pd.DataFrame, age_edges: tuple[int, ...]) -> pd.DataFrame:
    """One column per subgroup present (its family name), holding each row's slice; same index as
    ``df``. Missing values are ``unknown``, never dropped."""
    out = pd.DataFrame(index=df.index)
    for sub in present(df):
        if sub.column == "age":
            out[sub.name] = df["age"].map(lambda v: age_band(v, age_edges))
        else:
            out[sub.name] = df[sub.column].map(lambda v, c=sub.column: normalise(c, v))
    return out


def slice_order(name: str, values: list[str], age_edges: tuple[int, ...]) -> list[str]:
    """The slices of a family in reading order: age bands youngest first, others by name; ``unknown``
    last."""
    known = [v for v in values if v != UNKNOWN]
    if name == "age_band":
        rank = {label: i for i, label in enumerate(age_band_labels(age_edges))}
        known.sort(key=lambda v: rank.get(v, len(rank)))
    else:
        known.sort()
    return known + ([UNKNOWN] if UNKNOWN in values else [])
