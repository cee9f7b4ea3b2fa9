"""Biopsy outcomes joined to the predictions a version served: realised sensitivity, specificity
and AUC, with bootstrap intervals, per time window, against the promotion gate's floors.

An outcomes file is a CSV with a ``label`` column (the biopsy result: ``0``/``1`` or
``benign``/``malignant``, any case, the spellings a ``manifest`` data source accepts:
:data:`~melanoma_mlops.data.sources.manifest_csv.MANIFEST_LABELS`) and an id column: ``request_id``
(what the server answered with) or ``sha256`` (``image_sha256`` also accepted: the sha256 of the
image bytes sent). With both columns a row is matched by its request id when it has one, else by
its hash. Every row is accounted for: matched, or listed as unmatched; a duplicate id or an unknown
label stops the command with the row's line, never a guess.

Pure functions on frames; :mod:`melanoma_mlops.monitoring.outcomes_record` records the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from melanoma_mlops.config import GateConfig
from melanoma_mlops.data.sources.manifest_csv import MANIFEST_LABELS
from melanoma_mlops.errors import DataError
from melanoma_mlops.evaluation.bootstrap import bootstrap
from melanoma_mlops.evaluation.metrics import binary_metrics

LABEL_COLUMN = "label"
ID_COLUMNS = ("request_id", "sha256", "image_sha256")
#: The realised metrics and the gate floor each is held to (a field of GateConfig, read from it).
FLOORS = {"sensitivity": "min_sensitivity", "specificity": "min_specificity", "auc_roc": "min_auc"}
MAX_LISTED = 5
#: The model-version tag prefix the promotion gate writes its limits under (registry/decision.py).
GATE_TAG_PREFIX = "gate."
GATED = "the floors the version was gated with"


def gate_floors(version_tags: dict[str, str]) -> tuple[GateConfig, str]:
    """The floors a version is held to, and where they came from.

    A version's realised metrics are judged by the floors it was gated with (its ``gate.min_*``
    tags), not by today's defaults: a version promoted with ``--min-auc 0.85`` is flagged when its
    realised AUC may be under 0.85. A version the gate never decided on (no tags) falls back to the
    defaults, and the source says so.
    """
    found = {
        floor: float(version_tags[GATE_TAG_PREFIX + floor])
        for floor in FLOORS.values()
        if GATE_TAG_PREFIX + floor in version_tags
    }
    if not found:
        return GateConfig(), "the gate's defaults (the version has no gate tags)"
    return GateConfig(**found), GATED


def read_outcomes(path: str | Path) -> pd.DataFrame:
    """The outcomes CSV as ``line``, ``key_kind`` (request_id / sha256), ``key``, ``label`` (0/1)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such outcomes file (a CSV with request_id or sha256, and label)")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({exc})") from exc
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    ids = [c for c in ID_COLUMNS if c in raw.columns]
    if LABEL_COLUMN not in raw.columns or not ids:
        raise DataError(
            f"{path}: columns {list(raw.columns)}; an outcomes file needs `label` and `request_id` "
            "or `sha256` (the image's sha256, as the prediction log's image_sha256)"
        )
    hash_col = next((c for c in ("sha256", "image_sha256") if c in raw.columns), None)
    rows = []
    for i, row in raw.iterrows():
        line = int(i) + 2  # the header is line 1
        request_id = row.get("request_id", "").strip()
        sha = row[hash_col].strip().lower() if hash_col else ""
        if not request_id and not sha:
            raise DataError(f"{path}: line {line} has neither a request_id nor a sha256")
        value = row[LABEL_COLUMN].strip()
        if value.lower() not in MANIFEST_LABELS:
            raise DataError(
                f"{path}: line {line}: label {value!r} is not one of 0, 1, benign, malignant; fix the "
                "value (an indeterminate biopsy belongs in no outcomes file, not in benign)"
            )
        kind, key = ("request_id", request_id) if request_id else ("sha256", sha)
        rows.append((line, kind, key, MANIFEST_LABELS[value.lower()]))
    frame = pd.DataFrame(rows, columns=["line", "key_kind", "key", "label"])
    if frame.empty:
        raise DataError(f"{path}: no outcome rows")
    dup = frame[frame.duplicated(["key_kind", "key"], keep=False)]
    if len(dup):
        first = dup.iloc[0]
        lines = dup[dup["key"] == first["key"]]["line"].tolist()
        raise DataError(
            f"{path}: {first['key_kind']} {first['key']} appears on lines {lines} "
            f"({dup['key'].nunique()} duplicated ids in all): keep one outcome per prediction"
        )
    return frame


def join(outcomes: pd.DataFrame, records: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(matched, unmatched). ``records``: one version's logged predictions, oldest first. An image
    hash scored several times matches its latest prediction (the same bytes and version score the
    same). ``matched`` has the record's ``time``, ``probability``, ``threshold``, ``predicted``
    (the label answered) and the outcome's ``line``, ``key_kind``, ``key`` and ``label``."""
    cols = ["request_id", "image_sha256", "time", "probability", "threshold", "label"]
    recs = (
        records[cols].rename(columns={"label": "predicted"})
        if len(records)
        else pd.DataFrame(columns=[c if c != "label" else "predicted" for c in cols])
    )
    recs = recs.astype({"request_id": str, "image_sha256": str})
    by_id = recs.drop_duplicates("request_id", keep="last").set_index("request_id")
    by_hash = recs.drop_duplicates("image_sha256", keep="last").set_index("image_sha256")
    parts = []
    for kind, table in (("request_id", by_id), ("sha256", by_hash)):
        part = outcomes[outcomes["key_kind"] == kind]
        parts.append(part.join(table.drop(columns=[c for c in ("request_id", "image_sha256")
                                                   if c in table.columns]), on="key"))  # fmt: skip
    joined = pd.concat(parts).sort_values("line", kind="stable")
    hit = joined["probability"].notna()
    unmatched = joined.loc[~hit, ["line", "key_kind", "key", "label"]].reset_index(drop=True)
    return joined[hit].reset_index(drop=True), unmatched


@dataclass(frozen=True)
class WindowMetrics:
    """One window's realised figures: points, 95% intervals (None without both classes) and which
    floors the lower bounds fall under."""

    start: datetime
    end: datetime
    n: int
    positives: int
    point: dict[str, float]
    ci: dict[str, tuple[float, float]] | None
    below: list[str]

    @property
    def status(self) -> str:
        return "flagged" if self.below else ("ok" if self.ci is not None else "no interval")


def window_metrics(
    matched: pd.DataFrame, start: datetime, end: datetime, gate: GateConfig, n_boot: int = 1000
) -> WindowMetrics:
    """The realised metrics of ``matched`` (rows of one window) at the threshold the version served
    with; a floor is missed when the lower bound of its 95% interval is under it (the gate's rule)."""
    thresholds = matched["threshold"].astype(float).unique()
    if len(thresholds) != 1:
        raise DataError(f"the logged predictions carry {len(thresholds)} thresholds {thresholds.tolist()}")
    y, s, t = matched["label"].astype(int).to_numpy(), matched["probability"].astype(float), thresholds[0]
    n, positives = len(y), int(y.sum())
    if 0 < positives < n:
        point = binary_metrics(y, s, t)
        try:
            ci = bootstrap(y, s, t, n_boot=n_boot).ci
        except DataError:  # nearly every resample lacks a class (one malignant of a few): no interval
            ci = None
    else:  # one class only: sensitivity or specificity and AUC are undefined, and so are intervals
        tp = int(((s >= t) & (y == 1)).sum())
        tn = int(((s < t) & (y == 0)).sum())
        point = {
            "sensitivity": tp / positives if positives else math.nan,
            "specificity": tn / (n - positives) if n - positives else math.nan,
            "auc_roc": math.nan,
        }
        ci = None
    below = [m for m, floor in FLOORS.items() if ci is not None and ci[m][0] < getattr(gate, floor)]
    keep = {m: float(point[m]) for m in FLOORS}
    return WindowMetrics(start, end, n, positives, keep, {m: ci[m] for m in FLOORS} if ci else None, below)


def windows(
    matched: pd.DataFrame, since: datetime, until: datetime, width: timedelta, gate: GateConfig,
    n_boot: int = 1000,
) -> list[WindowMetrics]:  # fmt: skip
    """Consecutive windows of ``width`` ending at ``until`` (the oldest cut at ``since``), by the
    time of the prediction; only windows with matched outcomes, oldest first."""
    if width <= timedelta(0):
        raise DataError(f"the window must be positive; got {width}")
    times = pd.to_datetime(matched["time"], utc=True)
    back = ((pd.Timestamp(until) - times) // pd.Timedelta(width)).astype(int)
    out = []
    for k in sorted(back.unique(), reverse=True):
        end = until - k * width
        start = max(end - width, since)
        out.append(window_metrics(matched[back == k], start, end, gate, n_boot))
    return out


def describe_unmatched(unmatched: pd.DataFrame) -> str:
    shown = ", ".join(
        f"{r.key_kind} {r.key} (line {r.line})" for r in unmatched.head(MAX_LISTED).itertuples()
    )
    more = f" and {len(unmatched) - MAX_LISTED} more" if len(unmatched) > MAX_LISTED else ""
    return shown + more
