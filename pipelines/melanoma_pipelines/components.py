"""The component table: one thin KFP component per pipeline step, for both DAGs.

Each body imports one step function from ``melanoma_mlops.steps`` and calls it through
:func:`~melanoma_pipelines.runtime.run_step` (logging, one clear error line); KFP-only outputs
(Metrics, Markdown) are written by :mod:`melanoma_pipelines.runtime`. These are *lightweight*
components (so ``kfp.local`` can run them) whose base image is the project image: the package is
installed there and in the local virtualenv. Inputs are named like the configuration fields they
receive. No ``from __future__ import annotations`` here: KFP reads the annotations as types.

:data:`PROFILES` gives every component its cluster profile (resources, GPU, retries), which
:mod:`melanoma_pipelines.cluster` applies by component name, whichever DAG the task is in.
"""

from types import SimpleNamespace

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output


def validate(
    data: str,
    layout: str,
    task: str,
    min_image_size: int,
    allow_outside_root: bool,
    run_name: str,
    kfp_run_id: str,
    manifest: Output[Dataset],
    data_docs: Output[Artifact],
    report: Output[HTML],
) -> str:
    """Build the manifest from the data source and validate it with Great Expectations."""
    from melanoma_mlops.steps.validate import validate_step
    from melanoma_pipelines.runtime import run_step

    return run_step(
        "validate", validate_step, data, manifest.path, data_docs.path, report.path,
        min_image_size=min_image_size, layout=layout, task=task, run_name=run_name, kfp_run_id=kfp_run_id,
        allow_outside_root=allow_outside_root,
    )  # fmt: skip


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
    from melanoma_mlops.steps.split import split_step
    from melanoma_pipelines.runtime import run_step

    run_step(
        "split", split_step, manifest.path, train.path, val.path, test.path,
        parent_run_id=parent_run_id, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
    )  # fmt: skip


def oversample(
    parent_run_id: str,
    train: Input[Dataset],
    val: Input[Dataset],
    test: Input[Dataset],
    seed: int,
    balanced_train: Output[Dataset],
):
    """Random oversampling of the training manifest only, then the leakage check."""
    from melanoma_mlops.steps.oversample import oversample_step
    from melanoma_pipelines.runtime import run_step

    run_step(
        "oversample", oversample_step, train.path, val.path, test.path, balanced_train.path,
        parent_run_id=parent_run_id, seed=seed,
    )  # fmt: skip


def leaky_split(
    parent_run_id: str,
    manifest: Input[Dataset],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    train: Output[Dataset],
    val: Output[Dataset],
    test: Output[Dataset],
):
    """LEAKY (negative control): oversample everything to 1:1, then a plain stratified row split."""
    from melanoma_mlops.steps.ablation import leaky_split_step
    from melanoma_pipelines.runtime import run_step

    run_step(
        "leaky_split", leaky_split_step, manifest.path, train.path, val.path, test.path,
        parent_run_id=parent_run_id, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
    )  # fmt: skip


def stage1(
    parent_run_id: str,
    train: Input[Dataset],
    val: Input[Dataset],
    image_size: int,
    batch_size: int,
    weights: str,
    dropout: float,
    augment: bool,
    stage1_lr: float,
    stage1_epochs: int,
    patience: int,
    seed: int,
    mixed_precision: str,
    xla: str,
    deterministic: str,
    image_cache: str,
    shard_root: str,
    model: Output[Model],
):
    """Stage 1: train the head on a frozen ResNet50."""
    from melanoma_mlops.config import TrainingConfig
    from melanoma_mlops.steps.train import stage1_step
    from melanoma_pipelines.runtime import run_step

    cfg = TrainingConfig(
        image_size=image_size, batch_size=batch_size, weights=weights, dropout=dropout, augment=augment,
        stage1_lr=stage1_lr, stage1_epochs=stage1_epochs, patience=patience,
        mixed_precision=mixed_precision, xla=xla, deterministic=deterministic, image_cache=image_cache,
        shard_root=shard_root,
    )  # fmt: skip
    run_step(
        "stage1",
        stage1_step,
        train.path,
        val.path,
        model.path,
        parent_run_id=parent_run_id,
        cfg=cfg,
        seed=seed,
    )


def stage2(
    parent_run_id: str,
    stage1_model: Input[Model],
    train: Input[Dataset],
    val: Input[Dataset],
    image_size: int,
    batch_size: int,
    augment: bool,
    stage2_lr: float,
    stage2_epochs: int,
    patience: int,
    bn_inference: bool,
    seed: int,
    mixed_precision: str,
    xla: str,
    deterministic: str,
    image_cache: str,
    shard_root: str,
    model: Output[Model],
):
    """Stage 2: fine-tune every layer at a low learning rate."""
    from melanoma_mlops.config import TrainingConfig
    from melanoma_mlops.steps.train import stage2_step
    from melanoma_pipelines.runtime import run_step

    cfg = TrainingConfig(
        image_size=image_size, batch_size=batch_size, augment=augment, stage2_lr=stage2_lr,
        stage2_epochs=stage2_epochs, patience=patience, bn_inference=bn_inference,
        mixed_precision=mixed_precision, xla=xla, deterministic=deterministic, image_cache=image_cache,
        shard_root=shard_root,
    )  # fmt: skip
    run_step(
        "stage2", stage2_step, stage1_model.path, train.path, val.path, model.path,
        parent_run_id=parent_run_id, cfg=cfg, seed=seed,
    )  # fmt: skip


def single_stage(
    parent_run_id: str,
    train: Input[Dataset],
    val: Input[Dataset],
    image_size: int,
    batch_size: int,
    weights: str,
    dropout: float,
    augment: bool,
    single_stage_lr: float,
    single_stage_epochs: int,
    stage1_epochs: int,
    stage2_epochs: int,
    patience: int,
    bn_inference: bool,
    seed: int,
    mixed_precision: str,
    xla: str,
    deterministic: str,
    image_cache: str,
    shard_root: str,
    model: Output[Model],
):
    """Single-stage fine-tuning: every layer trainable from the first epoch, one learning rate."""
    from melanoma_mlops.config import TrainingConfig
    from melanoma_mlops.steps.train import single_stage_step
    from melanoma_pipelines.runtime import run_step

    cfg = TrainingConfig(
        image_size=image_size, batch_size=batch_size, weights=weights, dropout=dropout, augment=augment,
        stage1_epochs=stage1_epochs, stage2_epochs=stage2_epochs, patience=patience,
        bn_inference=bn_inference, mixed_precision=mixed_precision, xla=xla, deterministic=deterministic,
        image_cache=image_cache, shard_root=shard_root,
    )  # fmt: skip
    run_step(
        "single_stage", single_stage_step, train.path, val.path, model.path,
        parent_run_id=parent_run_id, cfg=cfg, lr=single_stage_lr,
        epochs=single_stage_epochs or stage1_epochs + stage2_epochs, seed=seed,
    )  # fmt: skip


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
    image_cache: str,
    shard_root: str,
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
):
    """Threshold frozen on validation; test metrics with CIs, curves, calibration."""
    from melanoma_mlops.config import EvaluationConfig
    from melanoma_mlops.steps.evaluate import evaluate_step
    from melanoma_pipelines.runtime import run_step, write_evaluation_metrics

    cfg = EvaluationConfig(
        threshold_rule=threshold_rule, target_sensitivity=target_sensitivity, fixed_threshold=fixed_threshold
    )
    result = run_step(
        "evaluate", evaluate_step, model.path, val.path, test.path, evaluation.path,
        parent_run_id=parent_run_id, image_size=image_size, batch_size=batch_size, cfg=cfg, seed=seed,
        image_cache=image_cache, shard_root=shard_root,
    )  # fmt: skip
    write_evaluation_metrics(result, metrics, classification)


def gradcam(
    parent_run_id: str,
    model: Input[Model],
    evaluation: Input[Artifact],
    image_size: int,
    gradcam_samples: int,
    seed: int,
    image_cache: str,
    shard_root: str,
    explanations: Output[Artifact],
    metrics: Output[Metrics],
):
    """Grad-CAM overlays for TP/FN/FP/TN test samples and localisation metrics."""
    from melanoma_mlops.steps.gradcam import gradcam_step
    from melanoma_pipelines.runtime import run_step, write_gradcam_metrics

    summary = run_step(
        "gradcam", gradcam_step, model.path, evaluation.path, explanations.path,
        parent_run_id=parent_run_id, image_size=image_size, n_samples=gradcam_samples, seed=seed,
        image_cache=image_cache, shard_root=shard_root,
    )  # fmt: skip
    write_gradcam_metrics(summary, metrics)


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
    from melanoma_mlops.steps.register import register_step
    from melanoma_pipelines.runtime import run_step

    return run_step(
        "register", register_step, model.path, evaluation.path, explanations.path,
        train.path, val.path, test.path, parent_run_id=parent_run_id, model_name=model_name,
    )  # fmt: skip


def promote(
    parent_run_id: str,
    evaluation: Input[Artifact],
    test: Input[Dataset],
    model_name: str,
    candidate_version: str,
    min_auc: float,
    min_sensitivity: float,
    min_specificity: float,
    max_auc_drop: float,
    min_test_positives: int,
    min_test_negatives: int,
    auto_promote: bool,
    image_size: int,
    batch_size: int,
    report: Output[Markdown],
    metrics: Output[Metrics],
) -> bool:
    """Gate the new version: enough test images, limits on the lower 95% bounds, and a paired
    comparison with the champion on the same test set."""
    from melanoma_mlops.config import GateConfig
    from melanoma_mlops.steps.promote import gate_step
    from melanoma_pipelines.runtime import run_step, write_gate_outputs

    gate = GateConfig(
        min_auc=min_auc, min_sensitivity=min_sensitivity, min_specificity=min_specificity,
        max_auc_drop=max_auc_drop, min_test_positives=min_test_positives,
        min_test_negatives=min_test_negatives, auto_promote=auto_promote, model_name=model_name,
    )  # fmt: skip
    decision = run_step(
        "promote", gate_step, evaluation.path, test.path, parent_run_id=parent_run_id,
        candidate_version=candidate_version, gate=gate, image_size=image_size, batch_size=batch_size,
    )  # fmt: skip
    return write_gate_outputs(decision, report, metrics)


def start_ablation(
    validate_run_id: str,
    run_name: str,
    trials: list[str],
    val_fraction: float,
    test_fraction: float,
    image_size: int,
    batch_size: int,
    weights: str,
    dropout: float,
    augment: bool,
    stage1_lr: float,
    stage1_epochs: int,
    stage2_lr: float,
    stage2_epochs: int,
    single_stage_lr: float,
    single_stage_epochs: int,
    patience: int,
    bn_inference: bool,
    threshold_rule: str,
    target_sensitivity: float,
    ablation_run: Output[Artifact],
) -> str:
    """Open the ablation's MLflow parent run (experiment melanoma-ablation); check every trial."""
    from melanoma_mlops.steps.ablation import start_ablation_step, write_run_handle
    from melanoma_pipelines.runtime import run_step

    settings = {
        "val_fraction": val_fraction, "test_fraction": test_fraction, "image_size": image_size,
        "batch_size": batch_size, "weights": weights, "dropout": dropout, "augment": augment,
        "stage1_lr": stage1_lr, "stage1_epochs": stage1_epochs, "stage2_lr": stage2_lr,
        "stage2_epochs": stage2_epochs, "single_stage_lr": single_stage_lr,
        "single_stage_epochs": single_stage_epochs or stage1_epochs + stage2_epochs,
        "patience": patience, "bn_inference": bn_inference, "threshold_rule": threshold_rule,
        "target_sensitivity": target_sensitivity,
    }  # fmt: skip
    run_id = run_step(
        "start_ablation",
        start_ablation_step,
        validate_run_id,
        run_name=run_name,
        trials=trials,
        settings=settings,
    )
    write_run_handle(ablation_run.path, run_id)
    return run_id


def start_trial(
    ablation_run: Input[Artifact], trial: str, trial_run_id: dsl.OutputPath(str), seed: dsl.OutputPath(int)
) -> str:
    """Open the trial's MLflow run; the returned arm key (protocol:variant) picks the branch."""
    from melanoma_mlops.steps.ablation import read_run_handle, start_trial_step
    from melanoma_pipelines.runtime import run_step, write_text

    arm, run_id, trial_seed = run_step(
        "start_trial", start_trial_step, read_run_handle(ablation_run.path), trial
    )
    write_text(trial_run_id, run_id)
    write_text(seed, str(trial_seed))
    return arm


def summarize(
    trial_run_id: str,
    trial: str,
    evaluation: Input[Artifact],
    train: Input[Dataset],
    val: Input[Dataset],
    test: Input[Dataset],
    summary: Output[Artifact],
) -> str:
    """Count test images with a copy in train (same code for every arm); return the trial's summary."""
    from melanoma_mlops.steps.ablation import summarize_trial_step
    from melanoma_pipelines.runtime import run_step

    return run_step(
        "summarize", summarize_trial_step, evaluation.path, train.path, val.path, test.path, summary.path,
        trial_run_id=trial_run_id, trial=trial,
    )  # fmt: skip


def finish_trial(trial_run_id: str, summary: str) -> str:
    """Close the trial's MLflow run and hand its summary to the comparison."""
    from melanoma_mlops.steps.ablation import finish_trial_step
    from melanoma_pipelines.runtime import run_step

    return run_step("finish_trial", finish_trial_step, trial_run_id, summary)


def compare(
    ablation_run_id: str, summaries: list[str], report: Output[Artifact], table: Output[Markdown]
) -> str:
    """Mean ± sd per arm, paired differences with 95% intervals; logged on the ablation parent run."""
    from melanoma_mlops.steps.ablation import compare_step
    from melanoma_pipelines.runtime import run_step, write_text

    markdown = run_step("compare", compare_step, ablation_run_id, summaries, report.path)
    write_text(table.path, markdown)
    return ablation_run_id


#: Every component by name, with its cluster profile (see melanoma_pipelines.cluster.PROFILES).
PROFILES = {
    "validate": "data",
    "split": "data",
    "oversample": "data",
    "leaky_split": "data",
    "stage1": "train",
    "stage2": "train",
    "single_stage": "train",
    "evaluate": "score",
    "gradcam": "score",
    "register": "registry",
    "promote": "gate",
    "start_ablation": "bookkeeping",
    "start_trial": "bookkeeping",
    "summarize": "bookkeeping",
    "finish_trial": "bookkeeping",
    "compare": "bookkeeping",
}
_FUNCTIONS = (
    validate, split, oversample, leaky_split, stage1, stage2, single_stage, evaluate, gradcam, register,
    promote, start_ablation, start_trial, summarize, finish_trial, compare,
)  # fmt: skip


def build_components(image: str) -> SimpleNamespace:
    """KFP components of every step, running in ``image``."""
    return SimpleNamespace(
        **{fn.__name__: dsl.component(fn, base_image=image, install_kfp_package=False) for fn in _FUNCTIONS}
    )
