"""Scoring registered versions on a test manifest, through the pyfuncs that would serve.

The gate compares the candidate with the champion on the *same* images, each model fed raw image
bytes and applying its own preprocessing at its own input size, each at its own frozen threshold.
If the champion trained on images that are now in this test set (the data grew and the split
moved) its numbers there are inflated, so the comparison then uses only the images it never saw.

Every figure the gate decides on carries a 95% percentile bootstrap interval that resamples whole
groups (lesion / patient / duplicate cluster), like the evaluate step's
(:mod:`melanoma_mlops.evaluation.bootstrap`): images of one lesion are not independent evidence.
The champion comparison is *paired*: both models' AUCs are recomputed on the same resampled groups
and the interval is that of their difference.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from melanoma_mlops import storage, tracking
from melanoma_mlops.artifacts import CHAMPION
from melanoma_mlops.errors import GateError, MelanomaError
from melanoma_mlops.evaluation import bootstrap, metrics
from melanoma_mlops.evaluation.subgroups import SliceSpec
from melanoma_mlops.registry import subgroups
from melanoma_mlops.registry.lookup import alias_version
from melanoma_mlops.serving.inputs import IMAGE_COLUMN

logger = logging.getLogger(__name__)

# The candidate's pyfunc re-scores the test set; beyond this AUC gap from the evaluate step the
# served artifact does not reproduce its own evaluation (train/serve skew) and we say so loudly.
REPRODUCTION_TOLERANCE = 0.01


def with_intervals(
    y: np.ndarray, scores: np.ndarray, threshold: float, groups: np.ndarray | None
) -> dict[str, Any]:
    """Metrics at ``threshold`` plus 95% intervals of AUC, sensitivity and specificity (by group)."""
    figures: dict[str, Any] = dict(metrics.binary_metrics(y, scores, threshold))
    boot = subgroups.bootstrap_or_none(y, scores, threshold, groups)
    for key in ("auc_roc", "sensitivity", "specificity"):
        figures[f"{key}_ci"] = boot.ci[key] if boot is not None else subgroups.NO_INTERVAL
    figures["bootstrap"] = (
        {"n_boot": boot.n_boot, "unit": boot.unit, "n_units": boot.n_units, "n_redrawn": boot.n_redrawn}
        if boot is not None
        else {"n_boot": 0, "unit": "none", "n_units": 0, "n_redrawn": 0}
    )
    return figures


def paired_auc_difference(
    y: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, groups: np.ndarray | None
) -> tuple[float, tuple[float, float]]:
    """AUC(a) - AUC(b) on the same images and its paired 95% bootstrap interval
    (:func:`melanoma_mlops.registry.subgroups.paired_differences`: both scores recomputed on the
    same resampled groups; ``tests/unit/test_promotion.py`` checks the pairing)."""
    return subgroups.paired_differences(y, scores_a, 0.5, scores_b, 0.5, groups, ("auc_roc",))["auc_roc"]


def load_version(model_name: str, version: str) -> mlflow.pyfunc.PyFuncModel:
    uri = f"models:/{model_name}/{version}"
    try:
        return mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as exc:
        raise GateError(f"{uri} could not be loaded: {exc}") from exc


def score(loaded: mlflow.pyfunc.PyFuncModel, uris: Iterable[str], batch_size: int) -> np.ndarray:
    """P(malignant) for each image URI, read as raw bytes and scored by the pyfunc itself.

    Raw bytes, not decoded arrays: each model must apply its own preprocessing at its own input
    size, exactly as it would when serving.
    """
    uris = list(uris)
    scores: list[np.ndarray] = []
    for start in range(0, len(uris), batch_size):
        chunk = uris[start : start + batch_size]
        frame = pd.DataFrame({IMAGE_COLUMN: [storage.read_bytes(u) for u in chunk]})
        scores.append(loaded.predict(frame)["probability"].to_numpy(dtype=np.float64))
    return np.concatenate(scores) if scores else np.zeros(0)


def version_threshold(mv: ModelVersion, loaded: mlflow.pyfunc.PyFuncModel) -> float:
    """A version's frozen threshold: its ``threshold`` tag, else the contract in the model metadata."""
    if mv.tags.get("threshold"):
        return float(mv.tags["threshold"])
    meta = loaded.metadata.metadata or {}
    if "threshold" in meta:
        return float(meta["threshold"])
    from melanoma_mlops.serving.pyfunc import unwrap

    return float(unwrap(loaded).contract["threshold"])


def training_hashes(client: MlflowClient, mv: ModelVersion) -> set[str] | None:
    """sha256 of the images a version was trained on, from its pipeline's oversample step.

    None when that cannot be found (a version registered outside the pipeline, deleted runs):
    the gate then says the overlap is unknown instead of guessing.
    """
    run_id = mv.tags.get("pipeline_run_id", "")
    if not run_id:
        return None
    try:
        parent = client.get_run(run_id)
        runs = client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = {tracking.quote(run_id)} and tags.step = 'oversample'",
            max_results=1,
        )
        if not runs:
            return None
        files = [f for f in client.list_artifacts(runs[0].info.run_id, "data") if not f.is_dir]
        if not files:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(
                run_id=runs[0].info.run_id, artifact_path=files[0].path, dst_path=tmp
            )
            df = pd.read_csv(local, usecols=["sha256"], dtype=str, keep_default_na=False)
        return set(df["sha256"]) - {""}
    except (MlflowException, OSError, ValueError, KeyError) as exc:
        logger.warning("training manifest of %s v%s not found: %s", mv.name, mv.version, exc)
        return None


def has_both_classes(y: np.ndarray) -> bool:
    return 0 < int(np.sum(y)) < len(y)


def champion_on_same_test(
    client: MlflowClient,
    champion: ModelVersion,
    test: pd.DataFrame,
    candidate: tuple[np.ndarray, float],
    batch_size: int,
    spec: SliceSpec,
) -> dict[str, Any]:
    """Score the champion on the candidate's test set; compare AUCs (paired, with the 95% interval of
    the difference) on images neither trained on, and AUC and sensitivity per subgroup there.

    ``candidate``: its scores on ``test`` and its frozen threshold.
    """
    cand_scores, cand_threshold = candidate
    y = test["label"].to_numpy()
    try:
        loaded = mlflow.pyfunc.load_model(f"models:/{champion.name}/{champion.version}")
        threshold = version_threshold(champion, loaded)
        champ_scores = score(loaded, test["image_uri"].astype(str), batch_size)
    except (MelanomaError, MlflowException, OSError, KeyError, ValueError) as exc:
        return {"version": str(champion.version), "error": f"{type(exc).__name__}: {exc}"}
    groups = bootstrap.resampling_units(test)
    full = with_intervals(y, champ_scores, threshold, groups)
    seen = training_hashes(client, champion)
    overlap = None if seen is None else int(test["sha256"].astype(str).isin(seen).sum())
    compare = np.ones(len(test), dtype=bool)
    subset_note = f"all {len(test)} test images"
    if overlap:
        clean = ~test["sha256"].astype(str).isin(seen).to_numpy()
        if has_both_classes(y[clean]):
            compare = clean
            subset_note = (
                f"the {int(clean.sum())} test images the champion did not train on "
                f"({overlap} of its training images are in this test set)"
            )
        else:
            subset_note = (
                f"all {len(test)} test images, although the champion trained on {overlap} of them "
                "(the rest lack a class): its AUC is optimistic"
            )
    delta, delta_ci = paired_auc_difference(
        y[compare], cand_scores[compare], champ_scores[compare], None if groups is None else groups[compare]
    )
    by_slice = subgroups.compare_slices(
        test[compare].reset_index(drop=True),
        (cand_scores[compare], cand_threshold),
        (champ_scores[compare], threshold),
        spec,
    )
    return {
        "version": str(champion.version),
        "threshold": threshold,
        "metrics": full,
        "train_overlap": overlap,
        "compare_mask": compare,
        "compare_note": subset_note,
        "compare_auc": metrics.binary_metrics(y[compare], champ_scores[compare], threshold)["auc_roc"],
        "candidate_compare_auc": metrics.binary_metrics(y[compare], cand_scores[compare], threshold)[
            "auc_roc"
        ],
        "auc_delta": delta,
        "auc_delta_ci": delta_ci,
        "slices": by_slice,
    }


def score_candidate(
    model_name: str,
    version: str,
    test: pd.DataFrame,
    evaluation: dict[str, Any],
    image_size: int,
    batch_size: int,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The registered pyfunc's scores on the test set, and its figures with 95% intervals."""
    loaded = load_version(model_name, version)
    contract_size = (loaded.metadata.metadata or {}).get("input", {}).get("image_size")
    if contract_size is not None and int(contract_size) != int(image_size):
        logger.warning(
            "candidate contract image_size %s differs from the pipeline's %s", contract_size, image_size
        )
    logger.info("gate: scoring candidate v%s on %d test images", version, len(test))
    scores = score(loaded, test["image_uri"].astype(str), batch_size)
    y = test["label"].to_numpy()
    cand = with_intervals(y, scores, float(evaluation["threshold"]), bootstrap.resampling_units(test))
    eval_auc = float(evaluation["test"]["auc_roc"])
    if abs(cand["auc_roc"] - eval_auc) > REPRODUCTION_TOLERANCE:
        logger.warning(
            "the registered pyfunc scores AUC %.4f on the test set but the evaluate step measured %.4f: "
            "serving does not reproduce evaluation (preprocessing skew?)",
            cand["auc_roc"],
            eval_auc,
        )
    return scores, cand


def score_champion(
    client: MlflowClient,
    model_name: str,
    candidate_version: str,
    test: pd.DataFrame,
    candidate: tuple[np.ndarray, float],
    batch_size: int,
    spec: SliceSpec,
) -> tuple[Any, dict[str, Any] | None]:
    """(champion version, its comparison on the same test images), or (None, None) without one."""
    champion_mv = alias_version(client, model_name, CHAMPION)
    if champion_mv is None or str(champion_mv.version) == candidate_version:
        return None, None  # no champion, or re-gating the champion itself: nothing to compare against
    logger.info("gate: scoring champion v%s on the same test images", champion_mv.version)
    return champion_mv, champion_on_same_test(client, champion_mv, test, candidate, batch_size, spec)
