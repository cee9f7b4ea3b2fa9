"""Input and prediction drift of a window of logged predictions against a version's reference profile.

Each column (the image statistics of :mod:`melanoma_mlops.serving.image_stats`, the score,
``probability``, and the axes ``emb_00``... of the compact embedding,
:mod:`melanoma_mlops.model.embedding`, when both sides have them) is tested with the test
Evidently applies by default to a numerical column, run with SciPy
(docs/monitoring.md says why not Evidently itself):

* a reference of at most :data:`LARGE_REFERENCE` rows: the two-sample Kolmogorov-Smirnov test,
  drifted when p < :data:`KS_ALPHA` (0.05);
* a larger reference: there K-S flags differences too small to matter, so the Wasserstein
  distance normed by the reference's standard deviation, drifted when > :data:`WASSERSTEIN_NORMED`
  (0.1).

The version's status then follows Evidently's dataset-drift rule and our reading of it:
``drift`` when the score distribution drifted, at least :data:`DRIFT_SHARE` (half) of the image
statistics did, or at least half of the embedding axes did (the same share, for the other view of
the input); ``warn`` when fewer drifted but one column or axis stands out after Bonferroni's
correction for the number of columns tested (a family-wise 5%: by chance alone one of 13 columns
crosses p < 0.05 in about half of all windows, one of 29 in more), when the window holds fewer than
:data:`MIN_RECORDS` records (the tests then have little power) or when records were dropped or
failed in the log (the window is incomplete); ``ok`` otherwise. None of these numbers was chosen
for a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from melanoma_mlops.model.embedding import is_embedding_column
from melanoma_mlops.serving.image_stats import STAT_COLUMNS

SCORE_COLUMN = "probability"
KS_ALPHA = 0.05
WASSERSTEIN_NORMED = 0.1
LARGE_REFERENCE = 1000
DRIFT_SHARE = 0.5
MIN_RECORDS = 30
STATUSES = ("ok", "warn", "drift")


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    score: float
    threshold: float
    drifted: bool
    reference_mean: float
    current_mean: float


@dataclass(frozen=True)
class DriftReport:
    status: str
    reasons: list[str]
    columns: list[ColumnDrift]
    n_reference: int
    n_current: int
    flagged_rate_reference: float
    flagged_rate_current: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def input_columns(self) -> list[ColumnDrift]:
        """The image statistics' tests."""
        return [c for c in self.columns if c.column != SCORE_COLUMN and not is_embedding_column(c.column)]

    @property
    def embedding_columns(self) -> list[ColumnDrift]:
        """The embedding axes' tests (none when the version or the window has no embedding)."""
        return [c for c in self.columns if is_embedding_column(c.column)]

    @property
    def drifted_share(self) -> float:
        return _share(self.input_columns)

    @property
    def drifted_embedding_share(self) -> float:
        return _share(self.embedding_columns)

    def embedding_line(self) -> str:
        """One line on the embedding: how many axes drifted, or why none was tested."""
        axes = self.embedding_columns
        if not axes:
            return (
                "embedding: not tested (the version's reference or the window's records have no "
                "emb_* columns: registered before embeddings, or no record could be embedded)"
            )
        drifted = [c.column for c in axes if c.drifted]
        return f"{len(drifted)} of {len(axes)} embedding axes drifted" + (
            f": {', '.join(drifted)}" if drifted else ""
        )

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([c.__dict__ for c in self.columns])


def _share(columns: list[ColumnDrift]) -> float:
    return sum(c.drifted for c in columns) / len(columns) if columns else 0.0


def column_drift(column: str, reference: np.ndarray, current: np.ndarray) -> ColumnDrift:
    """One column's test (the rule in the module's docstring)."""
    ref, cur = np.asarray(reference, float), np.asarray(current, float)
    if len(ref) > LARGE_REFERENCE:
        spread = float(np.std(ref)) or 1.0
        score = float(stats.wasserstein_distance(ref, cur)) / spread
        method, threshold, drifted = (
            "wasserstein_distance_norm",
            WASSERSTEIN_NORMED,
            score > WASSERSTEIN_NORMED,
        )
    else:
        score = float(stats.ks_2samp(ref, cur).pvalue)
        method, threshold, drifted = "ks_p_value", KS_ALPHA, score < KS_ALPHA
    return ColumnDrift(column, method, score, threshold, bool(drifted), float(ref.mean()), float(cur.mean()))


def assess(reference: pd.DataFrame, current: pd.DataFrame, incomplete: int = 0) -> DriftReport:
    """Compare ``current`` (logged records of one version) with its ``reference`` profile.
    ``incomplete``: records of the log's writers that were dropped or failed."""
    axes = sorted(c for c in reference.columns if is_embedding_column(c))
    columns = [
        c
        for c in (*STAT_COLUMNS, SCORE_COLUMN, *axes)
        # a window whose records were not embedded (count ``unembedded``) has these columns empty
        if c in reference and c in current and reference[c].notna().any() and current[c].notna().any()
    ]
    results = [column_drift(c, reference[c].dropna(), current[c].dropna()) for c in columns]
    report = DriftReport(
        "ok", [], results, len(reference), len(current),
        float((reference["label"] == 1).mean()), float((current["label"] == 1).mean()),
    )  # fmt: skip
    reasons, status = [], "ok"
    drifted = [c.column for c in report.input_columns if c.drifted]
    score = next((c for c in results if c.column == SCORE_COLUMN), None)
    if score is not None and score.drifted:
        reasons.append(f"the score distribution drifted ({score.method} {score.score:.3g})")
    if report.drifted_share >= DRIFT_SHARE:
        reasons.append(
            f"{len(drifted)} of {len(report.input_columns)} input columns drifted: {', '.join(drifted)}"
        )
    if report.embedding_columns and report.drifted_embedding_share >= DRIFT_SHARE:
        reasons.append(report.embedding_line())
    if reasons:
        status = "drift"
    else:
        # One column of many crossing p < 0.05 is expected by chance (13 tests: about half of all
        # windows without any shift); a warning needs one that stands out after Bonferroni's correction.
        alpha = KS_ALPHA / max(len(results), 1)
        standing_out = [
            c.column
            for c in (*report.input_columns, *report.embedding_columns)
            if (c.method == "ks_p_value" and c.score < alpha) or (c.method != "ks_p_value" and c.drifted)
        ]
        if standing_out:
            reasons.append(
                f"input columns drifted at p < {alpha:.2g} (0.05 / {len(results)} tests): "
                + ", ".join(standing_out)
            )
        if len(current) < MIN_RECORDS:
            reasons.append(
                f"only {len(current)} records in the window (< {MIN_RECORDS}): the tests have little power"
            )
        if incomplete:
            reasons.append(
                f"{incomplete} records were dropped or failed in the log: the window is incomplete"
            )
        status = "warn" if reasons else "ok"
    return DriftReport(
        status, reasons, results, report.n_reference, report.n_current,
        report.flagged_rate_reference, report.flagged_rate_current,
    )  # fmt: skip
