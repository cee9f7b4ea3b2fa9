"""Performance by subgroup: every headline figure per slice of the test set, with its interval.

One number on a whole test set can hide a subgroup on which the model fails (TFX's Model Analysis
slices every metric by feature for this reason; CLAIM 2024 and TRIPOD+AI ask for it). The slices
are the subgroups of :mod:`melanoma_mlops.data.subgroups` (sex, age band, anatomical site, skin tone,
clinic, device: whichever the manifest carries), each value of each one a slice, missing values an
explicit ``unknown`` slice.

* **Disaggregation** is fairlearn's :class:`~fairlearn.metrics.MetricFrame` (the field's well-kept
  library for it): one frame per subgroup, our metric functions per slice.
* **Intervals** are ours: a 95% percentile bootstrap that resamples the *same units as the whole
  set* (lesion / patient / duplicate cluster: :func:`melanoma_mlops.evaluation.bootstrap.resampling_units`),
  restricted to the slice. MetricFrame's own bootstrap resamples rows, which would understate the
  uncertainty when several images show one lesion.
* **Too small to judge**: a slice with fewer than ``min_positives`` class-1 or ``min_negatives``
  class-0 images is ``insufficient``: its counts are reported, no metric and no verdict.
* pAUC (above 80% TPR) needs at least :data:`PAUC_MIN_POSITIVES` positives: below that the band
  TPR >= 0.8 holds one or two positive cases and the area is a step function of them.

:func:`evaluate_slices` is the library API the evaluate step, the gate and external validation share;
:func:`slices` gives the masks alone (the gate's paired comparison cuts the same slices).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame

from melanoma_mlops.data import subgroups
from melanoma_mlops.errors import DataError
from melanoma_mlops.evaluation import bootstrap, metrics

logger = logging.getLogger(__name__)

MEASURED, INSUFFICIENT = "measured", "insufficient"
#: The figures reported (and bootstrapped) per slice.
SLICE_METRICS = ("auc_roc", "sensitivity", "specificity", "pauc_80")
#: Fewest positives for a partial AUC above 80% TPR to mean anything (see the module docstring).
PAUC_MIN_POSITIVES = 10
#: MLflow metric names may hold letters, digits, ``_ - . /`` and spaces (colons not on Windows).
_UNSAFE = re.compile(r"[^\w.\- ]")


@dataclass(frozen=True)
class SliceSpec:
    """How the test set is cut and when a slice is large enough to judge."""

    age_edges: tuple[int, ...] = (30, 50, 70)
    min_positives: int = 5
    min_negatives: int = 5

    def as_record(self) -> dict[str, Any]:
        return {
            "age_edges": list(self.age_edges),
            "min_positives": self.min_positives,
            "min_negatives": self.min_negatives,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> SliceSpec:
        return cls(
            tuple(int(e) for e in record["age_edges"]),
            int(record["min_positives"]),
            int(record["min_negatives"]),
        )


@dataclass(frozen=True)
class Slice:
    """One slice of the test set: the subgroup (family), its value, the rows in it."""

    family: str
    value: str
    mask: np.ndarray

    @property
    def key(self) -> str:
        """``anatom_site=head/neck``: how people (and the gate's reason) name it."""
        return f"{self.family}={self.value}"


def _cut(frame: pd.DataFrame, spec: SliceSpec) -> list[Slice]:
    out: list[Slice] = []
    for family in frame.columns:
        values = frame[family].to_numpy()
        distinct = list(dict.fromkeys(values))
        if len(distinct) < 2:
            continue
        for value in subgroups.slice_order(family, distinct, spec.age_edges):
            out.append(Slice(family, value, values == value))
    return out


def slices(test: pd.DataFrame, spec: SliceSpec) -> list[Slice]:
    """Every slice of every subgroup the test manifest carries, in reading order.

    A subgroup whose every row holds one value says nothing a whole-set figure does not, and is
    left out (the record names it under ``uniform``).
    """
    return _cut(subgroups.slice_frame(test, spec.age_edges), spec)


def _uniform(frame: pd.DataFrame) -> dict[str, str]:
    """Subgroups with one value on every row (``{"clinic": "clinic 1"}``), said on the card instead."""
    return {f: str(frame[f].iat[0]) for f in frame.columns if len(frame) and frame[f].nunique() == 1}


def metric_slug(family: str, value: str) -> str:
    """The slice in an MLflow metric name: ``sex.female``, ``age_band.lt30``, ``anatom_site.head-neck``
    (``=``, ``<``, ``>=`` and ``/`` are not allowed there)."""
    text = (
        value.replace(">=", "ge").replace("<=", "le").replace("<", "lt").replace(">", "gt").replace("/", "-")
    )
    text = _UNSAFE.sub("_", text).strip(" .")[:60] or "_"
    return f"{family}.{text}"


def _both_classes(y: np.ndarray) -> bool:
    return 0 < int(np.sum(y)) < len(y)


def _ranking(fn: Callable[[np.ndarray, np.ndarray], float]) -> Callable[[Any, Any], float]:
    def metric(y_true: Any, y_score: Any) -> float:
        y, s = np.asarray(y_true), np.asarray(y_score, dtype=np.float64)
        return float(fn(y, s)) if _both_classes(y) else float("nan")

    return metric


def _metric_functions(threshold: float) -> dict[str, Callable[[Any, Any], float]]:
    """Per-slice metric functions for MetricFrame (y_pred is the score; NaN where a class is absent)."""

    def rate(y_true: Any, y_score: Any, cls: int) -> float:
        y, s = np.asarray(y_true), np.asarray(y_score, dtype=np.float64)
        of_class = y == cls
        if not of_class.any():
            return float("nan")
        called = s[of_class] >= threshold
        return float(np.mean(called if cls == 1 else ~called))

    return {
        "n": lambda y, s: float(len(y)),
        "positives": lambda y, s: float(np.sum(np.asarray(y) == 1)),
        "negatives": lambda y, s: float(np.sum(np.asarray(y) == 0)),
        "auc_roc": _ranking(lambda y, s: metrics.binary_metrics(y, s, threshold)["auc_roc"]),
        "pauc_80": _ranking(metrics.partial_auc_above_tpr),
        "sensitivity": lambda y, s: rate(y, s, 1),
        "specificity": lambda y, s: rate(y, s, 0),
    }


def disaggregate(
    y: np.ndarray, scores: np.ndarray, threshold: float, frame: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """Point figures per slice, one fairlearn MetricFrame per subgroup column of ``frame`` (each
    row's slice, :func:`melanoma_mlops.data.subgroups.slice_frame`): {family: figures by value}."""
    out = {}
    for family in frame.columns:
        mf = MetricFrame(
            metrics=_metric_functions(threshold),
            y_true=np.asarray(y),
            y_pred=np.asarray(scores, dtype=np.float64),
            sensitive_features=frame[family].to_numpy(),
        )
        out[family] = mf.by_group
    return out


def _interval(
    y: np.ndarray, s: np.ndarray, threshold: float, units: np.ndarray | None, n_boot: int, seed: int
) -> tuple[dict[str, tuple[float, float]], str]:
    try:
        boot = bootstrap.bootstrap(y, s, threshold, units, n_boot=n_boot, seed=seed)
    except DataError as exc:  # nearly no resample holds both classes: no interval
        return {}, str(exc)
    return {k: boot.ci[k] for k in SLICE_METRICS}, ""


def evaluate_slices(
    test: pd.DataFrame,
    y: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    spec: SliceSpec,
    *,
    overall: dict[str, Any] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Every slice's counts, figures at ``threshold`` and their 95% group-bootstrap intervals.

    ``test`` is the manifest of the scored rows (its subgroup columns and group ids), ``y`` and
    ``scores`` in its order. ``overall`` (the whole set's figures with ``ci``) is kept for the
    forest plot's reference line. The record is plain JSON (``evaluation.json``'s ``subgroups``).
    """
    y, scores = np.asarray(y).astype(int), np.asarray(scores, dtype=np.float64)
    if len(test) != len(y) or len(y) != len(scores):
        raise DataError(
            f"{len(test)} manifest rows, {len(y)} labels and {len(scores)} scores: they must pair"
        )
    units = bootstrap.resampling_units(test)
    frame = subgroups.slice_frame(test, spec.age_edges)
    points = disaggregate(y, scores, threshold, frame) if len(test) else {}
    rows: list[dict[str, Any]] = []
    for sl in _cut(frame, spec):
        fig = points[sl.family].loc[sl.value]
        pos, neg = int(fig["positives"]), int(fig["negatives"])
        row: dict[str, Any] = {
            "family": sl.family,
            "value": sl.value,
            "key": sl.key,
            "slug": metric_slug(sl.family, sl.value),
            "n": int(fig["n"]),
            "positives": pos,
            "negatives": neg,
        }
        if pos < spec.min_positives or neg < spec.min_negatives:
            row["status"] = INSUFFICIENT
            row["note"] = (
                f"{pos} class-1 and {neg} class-0 images; at least {spec.min_positives} and "
                f"{spec.min_negatives} are needed to judge"
            )
            rows.append(row)
            continue
        m = sl.mask
        ci, why = _interval(y[m], scores[m], threshold, None if units is None else units[m], n_boot, seed)
        row["status"] = MEASURED
        for key in SLICE_METRICS:
            if key == "pauc_80" and pos < PAUC_MIN_POSITIVES:
                continue
            row[key] = float(fig[key])
            if key in ci:
                row[f"{key}_ci"] = list(ci[key])
        if why:
            row["note"] = f"no interval: {why}"
        rows.append(row)
    record = {
        **spec.as_record(),
        "age_bands": subgroups.age_band_labels(spec.age_edges),
        "columns": [s.name for s in subgroups.present(test)],
        "lacking": [
            {"name": s.name, "label": s.label, "statement": s.lacking} for s in subgroups.lacking(test)
        ],
        "uniform": _uniform(frame),
        "unit": "group" if units is not None else "row",
        "n_boot": n_boot,
        "slices": rows,
    }
    if overall is not None:
        record["overall"] = overall
    measured = sum(r["status"] == MEASURED for r in rows)
    logger.info(
        "subgroups: %d slices of %s (%d measured, %d insufficient); lacking: %s",
        len(rows),
        ", ".join(record["columns"]) or "none",
        measured,
        len(rows) - measured,
        ", ".join(s["name"] for s in record["lacking"]) or "none",
    )
    return record


def flat_metrics(record: dict[str, Any]) -> dict[str, float]:
    """MLflow metrics ``slice/<family>.<value>/<metric>`` (+ ``_ci_low``/``_ci_high``), counts too."""
    out: dict[str, float] = {}
    for row in record.get("slices", []):
        base = f"slice/{row['slug']}"
        out[f"{base}/n"] = float(row["n"])
        out[f"{base}/positives"] = float(row["positives"])
        for key in SLICE_METRICS:
            value = row.get(key)
            if value is None or not np.isfinite(value):
                continue
            out[f"{base}/{key}"] = float(value)
            low, high = row.get(f"{key}_ci") or (None, None)
            if low is not None and high is not None:
                out[f"{base}/{key}_ci_low"], out[f"{base}/{key}_ci_high"] = float(low), float(high)
    return out


#: subgroups.csv columns, in order.
CSV_COLUMNS = (
    "subgroup",
    "value",
    "n",
    "positives",
    "negatives",
    "status",
    *(f"{k}{suffix}" for k in SLICE_METRICS for suffix in ("", "_ci_low", "_ci_high")),
    "note",
)


def table(record: dict[str, Any]) -> pd.DataFrame:
    """``subgroups.csv``: the whole set first, then one row per slice."""
    rows = []
    overall = record.get("overall")
    if overall:
        rows.append({"subgroup": "all", "value": "all", "status": MEASURED, **_flat_row(overall)})
    for r in record.get("slices", []):
        rows.append({"subgroup": r["family"], "value": r["value"], **_flat_row(r)})
    return pd.DataFrame(rows, columns=list(CSV_COLUMNS))


def _flat_row(r: dict[str, Any]) -> dict[str, Any]:
    out = {k: r.get(k) for k in ("n", "positives", "negatives", "status", "note")}
    for key in SLICE_METRICS:
        out[key] = r.get(key)
        low, high = r.get(f"{key}_ci") or (None, None)
        out[f"{key}_ci_low"], out[f"{key}_ci_high"] = low, high
    return {k: v for k, v in out.items() if v is not None}
