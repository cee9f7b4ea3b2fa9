"""The comparison maths: per-arm mean ± sd over seeds, paired differences with a t interval.

Pure functions on plain numbers and the trial summaries (no MLflow, no files), tested on
hand-made values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from melanoma_mlops.data import leakage
from melanoma_mlops.errors import ConfigError
from melanoma_mlops.experiments.ablation.design import ARM_KEYS, PROTOCOLS, VARIANTS, Arm, parse_trial

REPORT_METRICS = (
    "auc_roc",
    "pr_auc",
    "pauc_80",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
    "f1",
    "ece",
)
"""Test metrics in the comparison table (all at the threshold frozen on validation)."""
CONFIDENCE = 0.95
LOWER_IS_BETTER = frozenset({"ece"})
# Largest possible |a - b| per metric: every reported metric lies in [0, 1] except the ISIC pAUC
# above 80% TPR, which lies in [0, 0.2].
DIFFERENCE_BOUND = {m: 0.2 if m == "pauc_80" else 1.0 for m in REPORT_METRICS}


def trial_summary(
    trial: str,
    evaluation: Mapping[str, Any],
    train: pd.DataFrame,
    val: pd.DataFrame,
    test: pd.DataFrame,
    trial_metrics: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """What the comparison needs from one trial (pure: no MLflow).

    ``test_copies_in_train`` is computed identically for every arm -- test rows whose exact bytes
    (sha256) are in the training manifest the model was trained on -- so the honest arms' zero and
    the leaky arm's count are the same measurement. ``test_linked_in_train`` widens it to what a
    grouped split keeps apart: a copy, *or* another image of the same lesion / patient group or
    near-duplicate cluster (:func:`count_test_rows_linked_to_train`). The full cross-set check
    (image, bytes, duplicate cluster, group) is reported next to them.
    """
    arm, seed = parse_trial(trial)
    report = leakage.check_leakage(train, val, test)
    trial_metrics = trial_metrics or {}
    test_metrics = dict(evaluation.get("test", {}))
    test_metrics["ece"] = evaluation.get("calibration", {}).get("ece")
    n_test = len(test)
    copies = leakage.count_train_copies_in_test(train, test)
    linked = count_test_rows_linked_to_train(train, test)
    return {
        "trial": trial,
        "arm": arm.key,
        "label": arm.label,
        "protocol": arm.protocol,
        "variant": arm.variant,
        "leaky": arm.leaky,
        "seed": seed,
        "metrics": {k: _num(test_metrics.get(k)) for k in REPORT_METRICS},
        "ci": {k: evaluation.get("ci", {}).get(k) for k in REPORT_METRICS if k in evaluation.get("ci", {})},
        "threshold": _num(evaluation.get("threshold")),
        "n_train": len(train),
        "n_train_unique": int(train["image_uri"].nunique()),
        "n_val": len(val),
        "n_test": n_test,
        "n_test_malignant": int(test["label"].astype(int).sum()),
        "test_copies_in_train": copies,
        "test_copies_share": copies / n_test if n_test else 0.0,
        "test_linked_in_train": linked,
        "test_linked_share": linked / n_test if n_test else 0.0,
        "val_copies_in_train": leakage.count_train_copies_in_test(train, val),
        "leakage": report.summary(),
        "train_seconds": _num(sum(v for k, v in trial_metrics.items() if k.endswith("/train_seconds"))),
        "epochs_run": int(sum(v for k, v in trial_metrics.items() if k.endswith("/epochs_run"))),
    }


#: What ties a test image to a training image: the same bytes, the same lesion/patient group, the
#: same near-duplicate cluster.
LINK_KEYS = ("sha256", "group_id", "dup_cluster")


def count_test_rows_linked_to_train(train: pd.DataFrame, test: pd.DataFrame) -> int:
    """Test rows with a copy in train *or* a sibling there: an image of the same lesion or patient
    (``group_id``) or of the same near-duplicate cluster. Every honest split reads 0 by construction."""
    linked = np.zeros(len(test), dtype=bool)
    for key in LINK_KEYS:
        if key in train.columns and key in test.columns:
            seen = set(train[key].fillna("").astype(str)) - {""}
            linked |= test[key].fillna("").astype(str).isin(seen).to_numpy()
    return int(linked.sum())


def leaky_split_counts(train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame) -> dict[str, int]:
    """The leaky split's sizes and its leak: test (and val) rows that are copies of training images,
    and test rows linked to train by a copy, a lesion/patient or a near-duplicate cluster."""
    return {
        "train_images": len(train),
        "val_images": len(val),
        "test_images": len(test),
        "test_copies_in_train": leakage.count_train_copies_in_test(train, test),
        "test_linked_in_train": count_test_rows_linked_to_train(train, test),
        "val_copies_in_train": leakage.count_train_copies_in_test(train, val),
    }


def _num(value: Any) -> float | None:
    """A finite float, or None (JSON has no NaN; evaluation.json already writes NaN as null)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------------------------
# the comparison maths (pure)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    """Mean and spread of ``n`` values; ``sd`` (ddof 1) and the interval are NaN when n < 2."""

    n: int
    mean: float
    sd: float
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    values: tuple[float, ...] = field(default_factory=tuple)


def _finite(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def mean_sd(values: Iterable[float | None]) -> Stat:
    """Mean ± sample standard deviation (ddof = 1) of the finite values; missing values are dropped."""
    vals = _finite(values)
    n = len(vals)
    if n == 0:
        return Stat(0, float("nan"), float("nan"))
    mean = float(np.mean(vals))
    sd = float(np.std(vals, ddof=1)) if n >= 2 else float("nan")
    return Stat(n, mean, sd, values=tuple(vals))


def paired_interval(
    differences: Iterable[float | None], confidence: float = CONFIDENCE, bound: float | None = None
) -> Stat:
    """Mean of paired differences with a Student-t interval: mean ± t(1-α/2, n-1) · sd / √n.

    Why t and not a bootstrap: with 3-5 seeds a bootstrap of the differences cannot reach the tails,
    while the t interval is exact under normal differences and honest about how little 3 seeds say
    (t(0.975, 2) = 4.30). With n < 2 there is no interval (NaN); identical differences give a
    zero-width one. ``bound``: the largest possible absolute difference (1 for a metric in [0, 1]);
    the interval is clipped to it, since with 2-3 seeds the raw interval can exceed what is possible.
    """
    base = mean_sd(differences)
    if base.n < 2:
        return base
    half = float(stats.t.ppf(0.5 + confidence / 2, base.n - 1)) * base.sd / math.sqrt(base.n)
    low, high = base.mean - half, base.mean + half
    if bound is not None:
        low, high = max(low, -bound), min(high, bound)
    return Stat(base.n, base.mean, base.sd, low, high, base.values)


def _by_arm(summaries: Sequence[Mapping[str, Any]]) -> dict[str, dict[int, Mapping[str, Any]]]:
    out: dict[str, dict[int, Mapping[str, Any]]] = {}
    for s in summaries:
        out.setdefault(str(s["arm"]), {})[int(s["seed"])] = s
    return out


def _value(summary: Mapping[str, Any], metric: str) -> float | None:
    if metric in summary.get("metrics", {}):
        return summary["metrics"][metric]
    return summary.get(metric)


def paired_differences(
    summaries: Sequence[Mapping[str, Any]],
    a: str,
    b: str,
    metrics_: Sequence[str] = REPORT_METRICS,
    confidence: float = CONFIDENCE,
) -> dict[str, Any]:
    """``a − b`` per seed present in both arms (keys ``protocol:variant``), per metric, with the interval.

    Returns ``{"a", "b", "seeds", "metrics": {metric: {"per_seed": {seed: diff}, "stat": Stat,
    "a_better": k}}}`` where ``a_better`` counts seeds with a strictly positive difference (for
    ``ece`` lower is better, so it counts negative ones).
    """
    arms = _by_arm(summaries)
    seeds = sorted(set(arms.get(a, {})) & set(arms.get(b, {})))
    out: dict[str, Any] = {"a": a, "b": b, "seeds": seeds, "metrics": {}}
    for m in metrics_:
        per_seed: dict[int, float | None] = {}
        for s in seeds:
            va, vb = _value(arms[a][s], m), _value(arms[b][s], m)
            per_seed[s] = None if va is None or vb is None else float(va) - float(vb)
        diffs = _finite(per_seed.values())
        better = sum(1 for d in diffs if (d < 0 if m in LOWER_IS_BETTER else d > 0))
        out["metrics"][m] = {
            "per_seed": per_seed,
            "stat": paired_interval(per_seed.values(), confidence, DIFFERENCE_BOUND.get(m)),
            "a_better": better,
        }
    return out


def build_comparison(
    summaries: Sequence[Mapping[str, Any]],
    metrics_: Sequence[str] = REPORT_METRICS,
    confidence: float = CONFIDENCE,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the report shows, from the trial summaries.

    * ``arms``: per arm, mean ± sd over seeds of each metric and of the leak count;
    * ``paired``: ``two_stage − single_stage`` per seed within each protocol that has both;
    * ``leak_inflation``: ``leaky − honest`` per seed for each variant that has both -- what the
      published protocol adds to the numbers (on a different, contaminated test set: that is the
      point).
    """
    if not summaries:
        raise ConfigError("no trial summaries to compare")
    present = [a for a in ARM_KEYS if any(s["arm"] == a for s in summaries)]
    arms = _by_arm(summaries)
    arm_rows = []
    for key in present:
        arm = Arm.parse(key)
        rows = [arms[key][s] for s in sorted(arms[key])]
        arm_rows.append(
            {
                "arm": key,
                "label": arm.label,
                "leaky": arm.leaky,
                "seeds": sorted(arms[key]),
                "metrics": {m: mean_sd(_value(r, m) for r in rows) for m in metrics_},
                "test_copies_in_train": mean_sd(r["test_copies_in_train"] for r in rows),
                "test_copies_share": mean_sd(r["test_copies_share"] for r in rows),
                "test_linked_share": mean_sd(r.get("test_linked_share") for r in rows),
                "train_seconds": mean_sd(r.get("train_seconds") for r in rows),
            }
        )
    paired = [
        paired_differences(summaries, f"{p}:two_stage", f"{p}:single_stage", metrics_, confidence)
        for p in PROTOCOLS
        if f"{p}:two_stage" in present and f"{p}:single_stage" in present
    ]
    inflation = [
        paired_differences(summaries, f"leaky:{v}", f"honest:{v}", metrics_, confidence)
        for v in VARIANTS
        if f"leaky:{v}" in present and f"honest:{v}" in present
    ]
    trials = sorted(summaries, key=lambda s: (ARM_KEYS.index(s["arm"]), int(s["seed"])))
    return {
        "meta": dict(meta or {}),
        "confidence": confidence,
        "metrics": list(metrics_),
        "arms": arm_rows,
        "paired": paired,
        "leak_inflation": inflation,
        "trials": [dict(t) for t in trials],
    }
