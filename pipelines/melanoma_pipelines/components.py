"""Thin KFP components: each body imports one step function from ``melanoma_mlops`` and calls it.

These are *lightweight* components (so ``kfp.local.SubprocessRunner`` can run them) whose base
image is the project image: the package is installed there, and in the local virtualenv. The base
image is chosen at build time (``build_components(image)``), which is how ``compile --image``
works. No ``from __future__ import annotations`` here: KFP reads the annotations as types.
"""

from types import SimpleNamespace

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output


def validate(
    data: str,
    layout: str,
    task: str,
    min_image_size: int,
    run_name: str,
    kfp_run_id: str,
    manifest: Output[Dataset],
    data_docs: Output[Artifact],
    report: Output[HTML],
) -> str:
    """Build the manifest from the data source and validate it with Great Expectations."""
    from melanoma_mlops.validate import validate_step
    from melanoma_pipelines.runtime import run_step

    return run_step(
        "validate",
        validate_step,
        data,
        manifest.path,
        data_docs.path,
        report.path,
        min_image_size=min_image_size,
        layout=layout,
        task=task,
        run_name=run_name,
        kfp_run_id=kfp_run_id,
    )


def split(
    parent_run_id: str,
    manifest: Input[Dataset],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    train: Output[Dataset],
    val: Output[Dataset],
    test: Output[Dataset],
):
    """Grouped, stratified train/validation/test split."""
    from melanoma_mlops.prepare import split_step
    from melanoma_pipelines.runtime import run_step

    run_step(
        "split",
        split_step,
        manifest.path,
        train.path,
        val.path,
        test.path,
        parent_run_id=parent_run_id,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )


def oversample(
    parent_run_id: str,
    train: Input[Dataset],
    val: Input[Dataset],
    test: Input[Dataset],
    seed: int,
    balanced_train: Output[Dataset],
):
    """Random oversampling of the training manifest only, then the leakage check."""
    from melanoma_mlops.prepare import oversample_step
    from melanoma_pipelines.runtime import run_step

    run_step(
        "oversample",
        oversample_step,
        train.path,
        val.path,
        test.path,
        balanced_train.path,
        parent_run_id=parent_run_id,
        seed=seed,
    )


def stage1(
    parent_run_id: str,
    train: Input[Dataset],
    val: Input[Dataset],
    image_size: int,
    batch_size: int,
    weights: str,
    dropout: float,
    augment: bool,
    lr: float,
    epochs: int,
    patience: int,
    seed: int,
    mixed_precision: str,
    xla: str,
    model: Output[Model],
):
    """Stage 1: train the head on a frozen ResNet50."""
    from melanoma_mlops.stages import stage1
    from melanoma_pipelines.runtime import run_step

    run_step(
        "stage1",
        stage1,
        train.path,
        val.path,
        model.path,
        parent_run_id=parent_run_id,
        image_size=image_size,
        batch_size=batch_size,
        weights=weights,
        dropout=dropout,
        augment=augment,
        lr=lr,
        epochs=epochs,
        patience=patience,
        seed=seed,
        mixed_precision=mixed_precision,
        xla=xla,
    )


def stage2(
    parent_run_id: str,
    stage1_model: Input[Model],
    train: Input[Dataset],
    val: Input[Dataset],
    image_size: int,
    batch_size: int,
    augment: bool,
    lr: float,
    epochs: int,
    patience: int,
    bn_inference: bool,
    seed: int,
    mixed_precision: str,
    xla: str,
    model: Output[Model],
):
    """Stage 2: fine-tune every layer at a low learning rate."""
    from melanoma_mlops.stages import stage2
    from melanoma_pipelines.runtime import run_step

    run_step(
        "stage2",
        stage2,
        stage1_model.path,
        train.path,
        val.path,
        model.path,
        parent_run_id=parent_run_id,
        image_size=image_size,
        batch_size=batch_size,
        augment=augment,
        lr=lr,
        epochs=epochs,
        patience=patience,
        bn_inference=bn_inference,
        seed=seed,
        mixed_precision=mixed_precision,
        xla=xla,
    )


def evaluate(
    parent_run_id: str,
    model: Input[Model],
    val: Input[Dataset],
    test: Input[Dataset],
    image_size: int,
    batch_size: int,
    threshold_rule: str,
    target_sensitivity: float,
    fixed_threshold: float,
    seed: int,
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
):
    """Threshold frozen on validation; test metrics with CIs, curves, calibration."""
    from melanoma_mlops.evaluate import evaluate_step, flat_metrics
    from melanoma_pipelines.runtime import run_step

    result = run_step(
        "evaluate",
        evaluate_step,
        model.path,
        val.path,
        test.path,
        evaluation.path,
        parent_run_id=parent_run_id,
        image_size=image_size,
        batch_size=batch_size,
        threshold_rule=threshold_rule,
        target_sensitivity=target_sensitivity,
        fixed_threshold=fixed_threshold,
        seed=seed,
    )
    for name, value in flat_metrics(result).items():
        metrics.log_metric(name.replace("/", "_"), value)
    roc = result["roc"]
    classification.log_roc_curve(roc["fpr"], roc["tpr"], roc["thresholds"])
    classification.log_confusion_matrix(["benign", "malignant"], result["confusion"])


def gradcam(
    parent_run_id: str,
    model: Input[Model],
    evaluation: Input[Artifact],
    image_size: int,
    n_samples: int,
    seed: int,
    explanations: Output[Artifact],
    metrics: Output[Metrics],
):
    """Grad-CAM overlays for TP/FN/FP/TN test samples and localisation metrics."""
    import os

    from melanoma_mlops.evaluate import PREDICTIONS_FILE
    from melanoma_mlops.gradcam import gradcam_step
    from melanoma_pipelines.runtime import run_step

    summary = run_step(
        "gradcam",
        gradcam_step,
        model.path,
        os.path.join(evaluation.path, PREDICTIONS_FILE),
        explanations.path,
        parent_run_id=parent_run_id,
        image_size=image_size,
        n_samples=n_samples,
        seed=seed,
    )
    for key in ("energy_in_mask", "pointing_game"):
        if key in summary:
            metrics.log_metric(f"gradcam_{key}", summary[key])


def register(
    parent_run_id: str,
    model: Input[Model],
    evaluation: Input[Artifact],
    explanations: Input[Artifact],
    train: Input[Dataset],
    val: Input[Dataset],
    test: Input[Dataset],
    model_name: str,
) -> str:
    """Register the model in MLflow as a new version with alias ``challenger``."""
    from melanoma_mlops.register import register_step
    from melanoma_pipelines.runtime import run_step

    return run_step(
        "register",
        register_step,
        model.path,
        evaluation.path,
        explanations.path,
        train.path,
        val.path,
        test.path,
        parent_run_id=parent_run_id,
        model_name=model_name,
    )


def promote(
    parent_run_id: str,
    evaluation: Input[Artifact],
    test: Input[Dataset],
    model_name: str,
    candidate_version: str,
    min_auc: float,
    min_sensitivity: float,
    max_auc_drop: float,
    auto_promote: bool,
    image_size: int,
    batch_size: int,
    report: Output[Markdown],
    metrics: Output[Metrics],
) -> bool:
    """Gate the new version against absolute limits and the champion on the same test set."""
    from melanoma_mlops.promotion import gate_markdown, gate_step
    from melanoma_pipelines.runtime import run_step

    decision = run_step(
        "promote",
        gate_step,
        evaluation.path,
        test.path,
        parent_run_id=parent_run_id,
        model_name=model_name,
        candidate_version=candidate_version,
        min_auc=min_auc,
        min_sensitivity=min_sensitivity,
        max_auc_drop=max_auc_drop,
        auto_promote=auto_promote,
        image_size=image_size,
        batch_size=batch_size,
    )
    with open(report.path, "w", encoding="utf-8") as fh:
        fh.write(gate_markdown(decision))
    metrics.log_metric("gate_passed", float(decision["passed"]))
    metrics.log_metric("gate_candidate_auc", decision["candidate"]["auc"])
    champion = decision["champion"] or {}
    if champion.get("auc") is not None:
        metrics.log_metric("gate_champion_auc_same_test", champion["auc"])
        metrics.log_metric("gate_auc_delta", champion["auc_delta"])
    return bool(decision["promoted"])


STEPS = (validate, split, oversample, stage1, stage2, evaluate, gradcam, register, promote)


def build_components(image: str) -> SimpleNamespace:
    """KFP components of every step, running in ``image``."""
    return SimpleNamespace(
        **{fn.__name__: dsl.component(fn, base_image=image, install_kfp_package=False) for fn in STEPS}
    )
