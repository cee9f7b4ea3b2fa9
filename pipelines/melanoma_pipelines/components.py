"""The component table: one thin KFP component per pipeline step, for both DAGs.

Each body imports one step function from ``melanoma_mlops.steps`` and calls it through
:func:`~melanoma_pipelines.runtime.run_step` (logging, one clear error line); KFP-only outputs
(Metrics, Markdown) are written by :mod:`melanoma_pipelines.runtime`. These are *lightweight*
components (so ``kfp.local`` can run them) whose base image is the project image: the package is
installed there and in the local virtualenv. Inputs are named like the configuration fields they
receive.

A parameter typed with a configuration group (``training: TrainingConfig``) stands for every field
of that group: :func:`melanoma_pipelines.params.config_component` generates the component's KFP
signature from ``config.py`` (one input per field, with its default and help) and rebuilds the group
in the body's first line, so a new setting needs no edit here. No ``from __future__ import
annotations`` here: KFP and the generator read the annotations as types.

:data:`PROFILES` gives every component its cluster profile (resources, GPU, retries), which
:mod:`melanoma_pipelines.cluster` applies by component name, whichever DAG the task is in.
"""

from types import SimpleNamespace

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from melanoma_mlops.config import (
    DataConfig,
    EvaluationConfig,
    ExplainConfig,
    ExternalConfig,
    GateConfig,
    SingleStageConfig,
    TrainingConfig,
)

from .params import config_component


def validate(
    data: str,
    run_name: str,
    kfp_run_id: str,
    data_cfg: DataConfig,
    manifest: Output[Dataset],
    data_docs: Output[Artifact],
    report: Output[HTML],
) -> str:
    """Build the manifest from the data source and validate it with Great Expectations."""
    from melanoma_mlops.steps.validate import validate_step
    from melanoma_pipelines.runtime import run_step

    return run_step(
        "validate", validate_step, data, manifest.path, data_docs.path, report.path,
        cfg=data_cfg, run_name=run_name, kfp_run_id=kfp_run_id,
    )  # fmt: skip


def split(
    parent_run_id: str,
    manifest: Input[Dataset],
    seed: int,
    data_cfg: DataConfig,
    train: Output[Dataset],
    val: Output[Dataset],
    test: Output[Dataset],
):
    """Grouped, stratified train/validation/test split."""
    from melanoma_mlops.steps.split import split_step
    from melanoma_pipelines.runtime import run_step

    run_step(
        "split", split_step, manifest.path, train.path, val.path, test.path,
        parent_run_id=parent_run_id, cfg=data_cfg, seed=seed,
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
    seed: int,
    data_cfg: DataConfig,
    train: Output[Dataset],
    val: Output[Dataset],
    test: Output[Dataset],
):
    """LEAKY (negative control): oversample everything to 1:1, then a plain stratified row split."""
    from melanoma_mlops.steps.ablation import leaky_split_step
    from melanoma_pipelines.runtime import run_step

    run_step(
        "leaky_split", leaky_split_step, manifest.path, train.path, val.path, test.path,
        parent_run_id=parent_run_id, cfg=data_cfg, seed=seed,
    )  # fmt: skip


def stage1(
    parent_run_id: str,
    train: Input[Dataset],
    val: Input[Dataset],
    seed: int,
    training: TrainingConfig,
    model: Output[Model],
):
    """Stage 1: train the head on a frozen ResNet50."""
    from melanoma_mlops.steps.train import stage1_step
    from melanoma_pipelines.runtime import run_step

    run_step(
        "stage1", stage1_step, train.path, val.path, model.path,
        parent_run_id=parent_run_id, cfg=training, seed=seed,
    )  # fmt: skip


def stage2(
    parent_run_id: str,
    stage1_model: Input[Model],
    train: Input[Dataset],
    val: Input[Dataset],
    seed: int,
    training: TrainingConfig,
    model: Output[Model],
):
    """Stage 2: fine-tune every layer at a low learning rate."""
    from melanoma_mlops.steps.train import stage2_step
    from melanoma_pipelines.runtime import run_step

    run_step(
        "stage2", stage2_step, stage1_model.path, train.path, val.path, model.path,
        parent_run_id=parent_run_id, cfg=training, seed=seed,
    )  # fmt: skip


def single_stage(
    parent_run_id: str,
    train: Input[Dataset],
    val: Input[Dataset],
    seed: int,
    training: TrainingConfig,
    single_stage: SingleStageConfig,
    model: Output[Model],
):
    """Single-stage fine-tuning: every layer trainable from the first epoch, one learning rate."""
    from melanoma_mlops.steps.train import single_stage_step
    from melanoma_pipelines.runtime import run_step

    run_step(
        "single_stage", single_stage_step, train.path, val.path, model.path,
        parent_run_id=parent_run_id, cfg=training, single_stage=single_stage, seed=seed,
    )  # fmt: skip


def evaluate(
    parent_run_id: str,
    model: Input[Model],
    val: Input[Dataset],
    test: Input[Dataset],
    seed: int,
    training: TrainingConfig,
    evaluation_cfg: EvaluationConfig,
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
):
    """Threshold frozen on validation; test metrics with CIs, curves, calibration."""
    from melanoma_mlops.steps.evaluate import evaluate_step
    from melanoma_pipelines.runtime import run_step, write_evaluation_metrics

    figures = run_step(
        "evaluate", evaluate_step, model.path, val.path, test.path, evaluation.path,
        parent_run_id=parent_run_id, training=training, cfg=evaluation_cfg, seed=seed,
    )  # fmt: skip
    write_evaluation_metrics(figures, metrics, classification)


def gradcam(
    parent_run_id: str,
    model: Input[Model],
    evaluation: Input[Artifact],
    seed: int,
    training: TrainingConfig,
    explain: ExplainConfig,
    explanations: Output[Artifact],
    metrics: Output[Metrics],
):
    """Grad-CAM overlays for TP/FN/FP/TN test samples and localisation metrics."""
    from melanoma_mlops.steps.gradcam import gradcam_step
    from melanoma_pipelines.runtime import run_step, write_gradcam_metrics

    summary = run_step(
        "gradcam", gradcam_step, model.path, evaluation.path, explanations.path,
        parent_run_id=parent_run_id, training=training, cfg=explain, seed=seed,
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
    gate: GateConfig,
) -> str:
    """Register the model in MLflow as a new version with alias ``challenger``."""
    from melanoma_mlops.steps.register import register_step
    from melanoma_pipelines.runtime import run_step

    return run_step(
        "register", register_step, model.path, evaluation.path, explanations.path,
        train.path, val.path, test.path, parent_run_id=parent_run_id, model_name=gate.model_name,
    )  # fmt: skip


def promote(
    parent_run_id: str,
    evaluation: Input[Artifact],
    test: Input[Dataset],
    candidate_version: str,
    training: TrainingConfig,
    gate: GateConfig,
    report: Output[Markdown],
    metrics: Output[Metrics],
) -> bool:
    """Gate the new version: enough test images, limits on the lower 95% bounds, and a paired
    comparison with the champion on the same test set."""
    from melanoma_mlops.steps.promote import gate_step
    from melanoma_pipelines.runtime import run_step, write_gate_outputs

    decision = run_step(
        "promote", gate_step, evaluation.path, test.path, parent_run_id=parent_run_id,
        candidate_version=candidate_version, gate=gate, training=training,
    )  # fmt: skip
    return write_gate_outputs(decision, report, metrics)


def external_validation(
    model_uri: str,
    data: str,
    name: str,
    seed: int,
    data_cfg: DataConfig,
    explain: ExplainConfig,
    external_cfg: ExternalConfig,
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
) -> str:
    """External validation: a registered model on another data set, as its own MLflow run (the
    ``melanoma-mlops evaluate`` step); returns that run's id."""
    from melanoma_mlops.steps.external import external_step
    from melanoma_pipelines.runtime import run_step, write_external_metrics

    result = run_step(
        "external_validation", external_step, model_uri, data, name, evaluation.path,
        data_cfg=data_cfg, cfg=external_cfg, explain=explain, seed=seed,
    )  # fmt: skip
    write_external_metrics(result, metrics)
    return result["run_id"]


def start_ablation(
    validate_run_id: str,
    run_name: str,
    trials: list[str],
    data_cfg: DataConfig,
    training: TrainingConfig,
    single_stage: SingleStageConfig,
    evaluation_cfg: EvaluationConfig,
    ablation_run: Output[Artifact],
) -> str:
    """Open the ablation's MLflow parent run (experiment melanoma-ablation); check every trial."""
    from melanoma_mlops.steps.ablation import start_ablation_step, write_run_handle
    from melanoma_pipelines.runtime import run_step

    run_id = run_step(
        "start_ablation", start_ablation_step, validate_run_id, run_name=run_name, trials=trials,
        settings=(data_cfg, training, single_stage, evaluation_cfg),
    )  # fmt: skip
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
    "external_validation": "score",
    "start_ablation": "bookkeeping",
    "start_trial": "bookkeeping",
    "summarize": "bookkeeping",
    "finish_trial": "bookkeeping",
    "compare": "bookkeeping",
}
_FUNCTIONS = (
    validate, split, oversample, leaky_split, stage1, stage2, single_stage, evaluate, gradcam, register,
    promote, external_validation, start_ablation, start_trial, summarize, finish_trial, compare,
)  # fmt: skip


def build_components(image: str) -> SimpleNamespace:
    """KFP components of every step, running in ``image``."""
    return SimpleNamespace(
        **{
            fn.__name__: dsl.component(config_component(fn), base_image=image, install_kfp_package=False)
            for fn in _FUNCTIONS
        }
    )
