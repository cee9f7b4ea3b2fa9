"""The figures of an external validation: a registered model's scores on another data set, at the
threshold frozen on its own validation split (never re-tuned here), with the evaluate step's
intervals, subgroups and calibration.

The same library calls as the evaluate step (:mod:`melanoma_mlops.evaluation.evaluate`): metrics
and the group bootstrap, :func:`~melanoma_mlops.evaluation.subgroups.evaluate_slices`, the
reliability diagram; only the threshold comes from the model instead of a validation set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from melanoma_mlops.artifacts import EVALUATION_FILE, PLOTS, PREDICTIONS_FILE, SUBGROUPS_FILE
from melanoma_mlops.config import EvaluationConfig
from melanoma_mlops.errors import DataError
from melanoma_mlops.evaluation import bootstrap, forest, metrics, plots, subgroups
from melanoma_mlops.evaluation.evaluate import outcome

#: The external run's metric prefix (``external/auc_roc``, ``external/auc_roc_ci_low``).
PREFIX = "external"


def external_figures(
    data: pd.DataFrame,
    scores: np.ndarray,
    threshold: float,
    out_dir: str | Path,
    *,
    spec: subgroups.SliceSpec,
    class_names: tuple[str, str],
    seed: int,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """Whole-set and per-subgroup figures at ``threshold`` with 95% group-bootstrap intervals,
    calibration (ECE, reliability diagram), the ROC, predictions and subgroups.csv in ``out_dir``."""
    y = data["label"].to_numpy().astype(int)
    if not 0 < int(y.sum()) < len(y):
        raise DataError(
            f"the evaluated set has {int(y.sum())} {class_names[1]} and {len(y) - int(y.sum())} "
            f"{class_names[0]} images (after leaving out overlaps): AUC and sensitivity need both classes"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = metrics.binary_metrics(y, scores, threshold)
    boot = bootstrap.bootstrap(
        y, scores, threshold, bootstrap.resampling_units(data), n_boot=n_boot, seed=seed
    )
    overall = {"n": figures["n"], "positives": int(y.sum()), "negatives": int(len(y) - y.sum())}
    for key in subgroups.SLICE_METRICS:
        overall[key] = figures[key]
        if key in boot.ci:
            overall[f"{key}_ci"] = list(boot.ci[key])
    sliced = subgroups.evaluate_slices(
        data, y, scores, threshold, spec, overall=overall, n_boot=n_boot, seed=seed
    )
    calib = metrics.calibration(y, scores)
    result = {
        "threshold": threshold,
        "threshold_source": "frozen on the model's own validation split (never re-tuned here)",
        "external": figures,
        "ci": {k: list(v) for k, v in boot.ci.items()},
        "bootstrap": {"unit": boot.unit, "n_units": boot.n_units, "n_boot": n_boot},
        "calibration": calib,
        "confusion": metrics.confusion(y, scores, threshold),
        "n": len(y),
        "class_names": list(class_names),
        "subgroups": sliced,
    }
    (out / EVALUATION_FILE).write_text(json.dumps(metrics.json_safe(result), indent=2, allow_nan=False))
    preds = data.assign(score=scores, pred=(scores >= threshold).astype(int))
    preds["outcome"] = [outcome(int(a), int(b)) for a, b in zip(preds["label"], preds["pred"], strict=True)]
    preds.to_csv(out / PREDICTIONS_FILE, index=False)
    plots.plot_roc(y, scores, threshold, out / PLOTS["roc"], class_names[1])
    plots.plot_reliability(calib, out / PLOTS["reliability"], class_names[1])
    subgroups.table(sliced).to_csv(out / SUBGROUPS_FILE, index=False)
    forest.plot_forest(sliced, out / PLOTS["subgroups"], positive_name=class_names[1])
    return result


def flat_metrics(result: dict[str, Any]) -> dict[str, float]:
    """MLflow metrics: ``external/<metric>`` (+ ``_ci_low``/``_ci_high``), ``external/ece``, slices."""
    flat: dict[str, float] = {"threshold": result["threshold"], f"{PREFIX}/ece": result["calibration"]["ece"]}
    for key, value in result["external"].items():
        flat[f"{PREFIX}/{key}"] = value
        if key in result["ci"]:
            flat[f"{PREFIX}/{key}_ci_low"], flat[f"{PREFIX}/{key}_ci_high"] = result["ci"][key]
    flat.update(subgroups.flat_metrics(result["subgroups"]))
    return {k: float(v) for k, v in flat.items() if v is not None and np.isfinite(v)}


def gradcam_sample(
    clf: Any, out_dir: str | Path, predictions_dir: str | Path, *, image_size: int, n: int, seed: int
) -> dict[str, Any]:
    """Grad-CAM overlays of ``n`` scored images spread over TP/FN/FP/TN (the gradcam step's
    :func:`~melanoma_mlops.evaluation.gradcam.explain`), from this run's predictions."""
    from melanoma_mlops.evaluation.gradcam import explain  # TensorFlow: only when explaining

    preds = pd.read_csv(
        Path(predictions_dir) / PREDICTIONS_FILE, dtype={"sha256": str}, keep_default_na=False
    )
    return explain(clf, preds, out_dir, image_size=image_size, n_samples=n, seed=seed)


def slice_spec(params: dict[str, str]) -> subgroups.SliceSpec:
    """The subgroup cuts the model's own evaluation used (its pipeline run's params), else the defaults."""
    defaults = EvaluationConfig()
    cfg = EvaluationConfig(
        age_bands=params.get("age_bands", defaults.age_bands),
        slice_min_positives=int(params.get("slice_min_positives", defaults.slice_min_positives)),
        slice_min_negatives=int(params.get("slice_min_negatives", defaults.slice_min_negatives)),
    )
    return subgroups.SliceSpec(cfg.age_edges(), cfg.slice_min_positives, cfg.slice_min_negatives)
