"""Evaluation: threshold frozen on validation, then every metric on test with 95% CIs.

The decision threshold is chosen on the *validation* set by a named rule (default: the highest
threshold whose validation sensitivity reaches the target, i.e. the fewest false alarms at that
sensitivity) and frozen before the test set is looked at, so the test metrics are an honest
estimate at a fixed operating point.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from melanoma_mlops.artifacts import EVALUATION_FILE, PLOTS, PREDICTIONS_FILE, SUBGROUPS_FILE
from melanoma_mlops.evaluation import bootstrap, forest, metrics, plots, subgroups, thresholds
from melanoma_mlops.model import dataset

logger = logging.getLogger(__name__)


def predict(clf: keras.Model, df: pd.DataFrame, image_size: int, batch_size: int) -> np.ndarray:
    """Malignancy scores (float64, in manifest order)."""
    ds = dataset.make_dataset(df, image_size, batch_size)
    return clf.predict(ds, verbose=0).ravel().astype(np.float64)


def outcome(label: int, pred: int) -> str:
    return {(1, 1): "TP", (0, 1): "FP", (1, 0): "FN", (0, 0): "TN"}[(label, pred)]


def evaluate(
    clf: keras.Model,
    val: pd.DataFrame,
    test: pd.DataFrame,
    out_dir: str | Path,
    *,
    image_size: int,
    batch_size: int,
    threshold_rule: str,
    target_sensitivity: float,
    fixed_threshold: float,
    seed: int,
    slice_spec: subgroups.SliceSpec | None = None,
    class_names: tuple[str, str] = ("benign", "malignant"),
    n_boot: int = 1000,
) -> dict[str, Any]:
    """Score val and test, freeze the threshold on val, write metrics, predictions and plots, and
    the same figures per subgroup (``subgroups.csv``, the forest plot)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    val_scores = predict(clf, val, image_size, batch_size)
    test_scores = predict(clf, test, image_size, batch_size)
    threshold = thresholds.choose_threshold(
        val["label"],
        val_scores,
        threshold_rule,
        target_sensitivity=target_sensitivity,
        fixed_threshold=fixed_threshold,
    )
    y = test["label"].to_numpy()
    test_metrics = metrics.binary_metrics(y, test_scores, threshold)
    units = bootstrap.resampling_units(test)
    boot = bootstrap.bootstrap(y, test_scores, threshold, units, n_boot=n_boot, seed=seed)
    sliced = subgroups.evaluate_slices(
        test,
        y,
        test_scores,
        threshold,
        slice_spec or subgroups.SliceSpec(),
        overall=_overall(test_metrics, boot.ci),
        n_boot=n_boot,
        seed=seed,
    )
    calib = metrics.calibration(y, test_scores)
    matrix = metrics.confusion(y, test_scores, threshold)
    fpr, tpr, thr = metrics.roc_points(y, test_scores)
    result = {
        "threshold": threshold,
        "threshold_rule": threshold_rule,
        "target_sensitivity": target_sensitivity if threshold_rule == "sensitivity" else None,
        "val": metrics.binary_metrics(val["label"], val_scores, threshold),
        "test": test_metrics,
        "ci": {k: list(v) for k, v in boot.ci.items()},
        "bootstrap": {
            "unit": boot.unit,
            "n_units": boot.n_units,
            "n_boot": n_boot,
            "n_redrawn": boot.n_redrawn,
        },
        "calibration": calib,
        "confusion": matrix,
        "roc": {"fpr": fpr, "tpr": tpr, "thresholds": thr},
        "n_val": len(val),
        "n_test": len(test),
        "class_names": list(class_names),
        "subgroups": sliced,
    }
    (out / EVALUATION_FILE).write_text(json.dumps(metrics.json_safe(result), indent=2, allow_nan=False))
    preds = test.copy()
    preds["score"] = test_scores
    preds["pred"] = (test_scores >= threshold).astype(int)
    preds["outcome"] = [outcome(int(a), int(b)) for a, b in zip(preds["label"], preds["pred"], strict=True)]
    preds.to_csv(out / PREDICTIONS_FILE, index=False)
    plots.plot_roc(y, test_scores, threshold, out / PLOTS["roc"], class_names[1])
    plots.plot_pr(y, test_scores, threshold, out / PLOTS["pr"])
    plots.plot_confusion(matrix, out / PLOTS["confusion"], class_names)
    plots.plot_reliability(calib, out / PLOTS["reliability"], class_names[1])
    subgroups.table(sliced).to_csv(out / SUBGROUPS_FILE, index=False)
    forest.plot_forest(sliced, out / PLOTS["subgroups"], positive_name=class_names[1])
    return result


def _overall(test_metrics: dict[str, Any], ci: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """The whole test set's figures as a slice row (the forest plot's reference line, the CSV's first row)."""
    out: dict[str, Any] = {
        "n": test_metrics["n"],
        "positives": test_metrics["tp"] + test_metrics["fn"],
        "negatives": test_metrics["tn"] + test_metrics["fp"],
    }
    for key in subgroups.SLICE_METRICS:
        out[key] = test_metrics[key]
        if key in ci:
            out[f"{key}_ci"] = list(ci[key])
    return out


def flat_metrics(result: dict[str, Any]) -> dict[str, float]:
    """MLflow metric names: ``test/<metric>``, ``test/<metric>_ci_low|high``, ``val/<metric>``."""
    flat: dict[str, float] = {"threshold": result["threshold"], "test/ece": result["calibration"]["ece"]}
    for key in metrics.METRIC_KEYS:
        flat[f"test/{key}"] = result["test"][key]
        if key in result["ci"]:
            low, high = result["ci"][key]
            flat[f"test/{key}_ci_low"], flat[f"test/{key}_ci_high"] = low, high
        if key not in metrics.COUNT_KEYS:
            flat[f"val/{key}"] = result["val"][key]
    return {k: float(v) for k, v in flat.items() if v is not None and np.isfinite(v)}
