"""The comparison of pipeline runs, pure: run records in (params, test metrics with their intervals,
the evaluate step's per-image predictions), the table, the paired differences and the verdicts out.

No MLflow here: :mod:`melanoma_mlops.experiments.compare.records` builds the records, and the tests
build them from numbers.

Run letters: the first run is **A**, the reference; every other run is compared with it (``B - A``:
positive = B scored higher). All headline metrics are higher-is-better. Two runs are *paired* when
their predictions cover the same test images with the same labels (the same test fingerprint:
sorted ``sha256:label`` pairs, :func:`melanoma_mlops.data.manifest.fingerprint`); each model then
stays at its own frozen threshold and the bootstrap resamples the reference's groups.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from melanoma_mlops.config import GateConfig
from melanoma_mlops.data import manifest
from melanoma_mlops.errors import ConfigError
from melanoma_mlops.evaluation import bootstrap
from melanoma_mlops.evaluation.metrics import HEADLINE_KEYS

#: The metric a verdict always speaks about, whether or not it differs: the ranking quality.
PRIMARY = "auc_roc"
#: How a metric is named in a verdict.
SHORT_NAMES = {
    "auc_roc": "AUC",
    "pr_auc": "PR-AUC",
    "pauc_80": "pAUC>80%TPR",
    "balanced_accuracy": "balanced accuracy",
}
N_BOOT = 1000
BOOT_SEED = 0


@dataclass(frozen=True)
class RunRecord:
    """What one parent run recorded: enough to compare it (see ``records.read_run``)."""

    run_id: str
    name: str
    start_time: int  # ms since the epoch (MLflow's)
    params: Mapping[str, str]
    metrics: Mapping[str, float]
    #: The evaluate step's predictions.csv (manifest columns + ``score``), None when not found.
    predictions: pd.DataFrame | None = None
    status: str = "FINISHED"
    url: str = ""

    @property
    def threshold(self) -> float | None:
        value = self.metrics.get("threshold")
        return None if value is None or not math.isfinite(value) else float(value)

    @property
    def test_fingerprint(self) -> str:
        return "" if self.predictions is None else manifest.fingerprint(self.predictions)


@dataclass(frozen=True)
class Estimate:
    """A test metric as the run logged it: the value and its 95% interval (NaN when absent)."""

    value: float
    low: float = float("nan")
    high: float = float("nan")


@dataclass(frozen=True)
class Pairing:
    """One run compared with the reference: paired differences, or why there are none."""

    label: str  # "B"
    reference: str  # "A"
    #: metric -> the paired difference (this run - the reference); empty when not paired.
    differences: Mapping[str, bootstrap.PairedDifference]
    #: Why the runs were not paired (different test sets, no predictions), "" when paired.
    unpaired_reason: str
    n_images: int = 0
    n_malignant: int = 0
    unit: str = ""  # what the bootstrap resampled: "group" or "row"
    verdict: str = ""
    #: Said when the test set is too small for its intervals to be trusted.
    caution: str = ""


@dataclass(frozen=True)
class Comparison:
    runs: tuple[RunRecord, ...]
    labels: tuple[str, ...]
    #: param -> its value per run (None where a run has no such param): only params that differ.
    params: Mapping[str, tuple[str | None, ...]]
    #: metric -> its estimate per run (None where a run did not log it).
    metrics: Mapping[str, tuple[Estimate | None, ...]]
    pairings: tuple[Pairing, ...]
    metric_keys: tuple[str, ...] = field(default=HEADLINE_KEYS)


def labels_for(n: int) -> tuple[str, ...]:
    """A, B, C, ... (then A2, B2, ... past Z: nobody reads 27 runs side by side, but it must work)."""
    letters = string.ascii_uppercase
    return tuple(letters[i % 26] + (str(i // 26 + 1) if i >= 26 else "") for i in range(n))


def differing_params(runs: Sequence[RunRecord]) -> dict[str, tuple[str | None, ...]]:
    """The params whose value is not the same in every run, sorted by name."""
    keys = sorted(set().union(*(r.params for r in runs)))
    out = {}
    for key in keys:
        values = tuple(r.params.get(key) for r in runs)
        if len(set(values)) > 1:
            out[key] = values
    return out


def estimate_of(metrics: Mapping[str, float], key: str) -> Estimate | None:
    """``test/<key>`` with ``test/<key>_ci_low|high`` as the evaluate step logged them."""
    value = metrics.get(f"test/{key}")
    if value is None:
        return None
    nan = float("nan")
    return Estimate(
        float(value),
        float(metrics.get(f"test/{key}_ci_low", nan)),
        float(metrics.get(f"test/{key}_ci_high", nan)),
    )


def _sorted_predictions(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in one canonical order (by image bytes, then path), so two runs' rows pair up."""
    return df.sort_values(["sha256", "image_uri"], kind="mergesort").reset_index(drop=True)


def pair(reference: RunRecord, other: RunRecord, label: str, ref_label: str) -> Pairing:
    """``other - reference`` on every headline metric, paired by image, or the reason it cannot be."""
    for run, name in ((reference, ref_label), (other, label)):
        if run.predictions is None:
            return Pairing(label, ref_label, {}, f"run {name} has no predictions.csv from its evaluate step")
        if run.threshold is None:
            return Pairing(label, ref_label, {}, f"run {name} logged no decision threshold")
    if reference.test_fingerprint != other.test_fingerprint:
        return Pairing(
            label,
            ref_label,
            {},
            f"different test sets (fingerprints {reference.test_fingerprint[:12]} and "
            f"{other.test_fingerprint[:12]}): the intervals side by side are all there is",
        )
    ref, oth = _sorted_predictions(reference.predictions), _sorted_predictions(other.predictions)
    y = ref["label"].to_numpy(dtype=int)
    units = bootstrap.resampling_units(ref)
    diffs = bootstrap.paired_differences(
        y,
        oth["score"].to_numpy(dtype=float),
        float(other.threshold),
        ref["score"].to_numpy(dtype=float),
        float(reference.threshold),
        units,
        n_boot=N_BOOT,
        seed=BOOT_SEED,
    )
    differences = {k: diffs[k] for k in HEADLINE_KEYS}
    return Pairing(
        label,
        ref_label,
        differences,
        "",
        n_images=len(y),
        n_malignant=int(y.sum()),
        unit="row" if units is None else "group",
        verdict=verdict(label, ref_label, differences),
        caution=small_set_caution(y),
    )


def small_set_caution(y: np.ndarray) -> str:
    """A warning when the test set is below the promotion gate's minimum of malignant or benign
    images (``--min-test-positives/negatives``): intervals from so few images are unreliable, and
    a single image can decide a threshold metric."""
    gate = GateConfig()
    malignant, benign = int(y.sum()), int(len(y) - y.sum())
    if malignant >= gate.min_test_positives and benign >= gate.min_test_negatives:
        return ""
    return (
        f"{malignant} malignant and {benign} benign test images, below the promotion gate's minimum of "
        f"{gate.min_test_positives}/{gate.min_test_negatives}: intervals from so few images are unreliable"
    )


def short(metric: str) -> str:
    return SHORT_NAMES.get(metric, metric.replace("_", " "))


def signed(x: float, digits: int = 3) -> str:
    return "nan" if not math.isfinite(x) else f"{x:+.{digits}f}"


def interval(low: float, high: float, digits: int = 3) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "[no interval]"
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def verdict(label: str, ref_label: str, differences: Mapping[str, bootstrap.PairedDifference]) -> str:
    """One line: where ``label`` is better or worse than the reference (the paired 95% interval of the
    difference excludes 0), and what it says about AUC either way."""

    def said(key: str) -> str:
        d = differences[key]
        return f"{signed(d.delta)} {interval(*d.ci)}"

    better = [k for k, d in differences.items() if d.differs and d.delta > 0]
    worse = [k for k, d in differences.items() if d.differs and d.delta < 0]
    parts = [
        f"{label} is {word} than {ref_label} on " + ", ".join(f"{short(k)} {said(k)}" for k in keys)
        for word, keys in (("better", better), ("worse", worse))
        if keys
    ]
    primary = f"{short(PRIMARY)} {said(PRIMARY)}" if PRIMARY in differences else ""
    if not parts:
        return f"{label} and {ref_label} cannot be told apart on any headline metric" + (
            f" ({primary})" if primary else ""
        )
    if primary and PRIMARY not in better + worse:
        parts.append(f"{short(PRIMARY)} cannot be told apart ({said(PRIMARY)})")
    return "; ".join(parts)


def compare(runs: Sequence[RunRecord], metric_keys: Sequence[str] = HEADLINE_KEYS) -> Comparison:
    """The whole comparison: the first run is the reference every other run is paired with."""
    if len(runs) < 2:
        raise ConfigError(f"compare needs two or more runs; got {len(runs)}")
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise ConfigError(f"run {', '.join(twice)} is given twice: name each run once")
    labels = labels_for(len(runs))
    metrics = {k: tuple(estimate_of(r.metrics, k) for r in runs) for k in metric_keys}
    pairings = tuple(
        pair(runs[0], run, label, labels[0]) for run, label in zip(runs[1:], labels[1:], strict=True)
    )
    return Comparison(tuple(runs), labels, differing_params(runs), metrics, pairings, tuple(metric_keys))


def newest(runs: Sequence[RunRecord]) -> RunRecord:
    """The run started last: the comparison is logged on it, where a user looks next."""
    return max(runs, key=lambda r: (r.start_time, r.run_id))


def test_set_summary(pairing: Pairing) -> str:
    if pairing.unpaired_reason:
        return f"{pairing.label} vs {pairing.reference}: not paired: {pairing.unpaired_reason}"
    unit = "lesion/patient groups" if pairing.unit == "group" else "images"
    return (
        f"{pairing.label} vs {pairing.reference}: the same {pairing.n_images} test images "
        f"({pairing.n_malignant} malignant): paired bootstrap over {unit}, {N_BOOT} resamples"
    )
