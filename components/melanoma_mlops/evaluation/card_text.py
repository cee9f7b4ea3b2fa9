"""How the model card writes values: table cells, numbers, and the words for a missing section.

Shared by the card (:mod:`melanoma_mlops.evaluation.modelcard`) and its sections kept in modules of
their own (:mod:`melanoma_mlops.evaluation.modelcard_subgroups`), so both say "not measured" the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

NOT_MEASURED = "not measured"
NOT_RECORDED = "not recorded"


def cell(value: Any) -> str:
    """A table cell: Markdown pipes and newlines escaped."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def num(value: Any, decimals: int = 3) -> str:
    """A number for people (ints as they are, NaN as "undefined", None as "not measured")."""
    if value is None:
        return NOT_MEASURED
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return cell(value)
    return "NaN (undefined)" if math.isnan(x) else f"{x:.{decimals}f}"


def with_interval(value: Any, interval: Sequence[float] | None, decimals: int = 3) -> str:
    """``0.912 (0.850–0.961)``; the value alone when there is no interval."""
    if value is None:
        return "–"
    text = num(value, decimals)
    if interval and len(interval) == 2 and all(v is not None for v in interval):
        text += f" ({num(interval[0], decimals)}–{num(interval[1], decimals)})"
    return text


def capitalised(name: str) -> str:
    """A class name as a heading: ``not melanoma`` -> ``Not melanoma``."""
    return name[:1].upper() + name[1:]
