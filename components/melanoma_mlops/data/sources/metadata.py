"""Each data set's metadata in one vocabulary: the values of the subgroup columns the layouts fill.

The columns themselves are declared in :mod:`melanoma_mlops.data.subgroups` (``SUBGROUP_COLUMNS``);
this module holds their value vocabularies, which the layouts write with and the sliced evaluation
reads with (:func:`melanoma_mlops.data.subgroups.normalise`), so a manifest CSV's ``F`` or ``3`` and
a layout's ``female`` or ``III`` fall into one slice.

Performance by subgroup (sex, age, anatomical site, skin tone, the clinic or source an image came
from) can only be compared across data sets when each data set's own spelling is translated once:
HAM10000 says ``localization=acral``, PAD-UFES-20 ``region=HAND`` and ``gender=FEMALE``, ISIC
``anatom_site_general=palms/soles``, DDI ``skin_tone=56``. The manifest carries:

``sex``          ``female`` / ``male`` (F/M/Woman/Man read as such); '' when not recorded
``age``          years (a number; missing when not recorded)
``anatom_site``  the ISIC ``anatom_site_general`` vocabulary (:data:`SITES`); the data set's own
                 value stays in its own column (``localization``, ``region``)
``skin_tone``    Fitzpatrick skin type as a Roman numeral (``I`` .. ``VI``), or the data set's own
                 band where it publishes bands (DDI: ``I-II``, ``III-IV``, ``V-VI``); '' unknown
``clinic``       the clinic or source an image came from, where the data set says so
                 (HAM10000's ``dataset``, Fitzpatrick17k's atlas, ISIC 2019's source set, the
                 ISIC Archive's ``attribution``)

None of the public sets records the camera or dermatoscope per image, so no layout fills a
``device`` column. A column a data set lacks is absent from its manifest (not filled with blanks),
so a report can say "no skin-tone information" instead of showing one "unknown" slice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import pandas as pd

logger = logging.getLogger(__name__)

#: ISIC's anatom_site_general values (2019 metadata, ISIC Archive); the 2020 challenge says ``torso``.
SITES = (
    "head/neck",
    "upper extremity",
    "lower extremity",
    "anterior torso",
    "posterior torso",
    "lateral torso",
    "torso",
    "palms/soles",
    "oral/genital",
)
FITZPATRICK = ("I", "II", "III", "IV", "V", "VI")
_SEX = {"female": "female", "f": "female", "woman": "female", "male": "male", "m": "male", "man": "male"}


def _text(values: Iterable[object]) -> list[str]:
    return ["" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v).strip() for v in values]


def sex(values: Iterable[object]) -> list[str]:
    """``female`` / ``male`` whatever the case; anything else ('unknown', '') is not recorded."""
    return [_SEX.get(v.lower(), "") for v in _text(values)]


def age(values: Iterable[object]) -> list[float]:
    """Years as numbers; empty or non-numeric cells are missing (the reader warns about the latter)."""
    return pd.to_numeric(pd.Series(_text(values), dtype=object).replace("", None), errors="coerce").tolist()


def anatom_site(values: Iterable[object], vocabulary: Mapping[str, str], data_set: str) -> list[str]:
    """The ISIC site of each value through ``vocabulary`` (keys lower-case; '' = not recorded).

    A value the vocabulary does not know is kept, lower-cased, and named in a warning: a new
    spelling must not vanish into "unknown".
    """
    out, unknown = [], set()
    for value in _text(values):
        key = value.lower()
        if key in vocabulary:
            out.append(vocabulary[key])
        else:
            out.append(key)
            unknown.add(value)
    if unknown:
        logger.warning(
            "%s: anatomical site value(s) %s have no ISIC equivalent here; kept as written",
            data_set,
            sorted(unknown),
        )
    return out


def fitzpatrick(values: Iterable[object]) -> list[str]:
    """Fitzpatrick type 1-6 (``3``, ``3.0``, ``III``) as ``I``..``VI``; -1, 0, empty or other text:
    '' (unknown)."""
    out = []
    for value in _text(values):
        if value.upper() in FITZPATRICK:
            out.append(value.upper())
            continue
        try:
            number = float(value)
        except ValueError:
            out.append("")
            continue
        out.append(FITZPATRICK[int(number) - 1] if number.is_integer() and 1 <= number <= 6 else "")
    return out
