"""The ablation's own components: the leaky negative control's split, single-stage training, and
the experiment's bookkeeping (start, trials, summary, comparison).

Same conventions as :mod:`melanoma_pipelines.components` (thin bodies calling one step function
through :func:`~melanoma_pipelines.runtime.run_step`; no ``from __future__ import annotations``: KFP
reads the annotations as types); their cluster profiles are in ``components.PROFILES``.
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Model, Output


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


#: In the order the component table lists them.
ABLATION_FUNCTIONS = (
    leaky_split,
    single_stage,
    start_ablation,
    start_trial,
    summarize,
    finish_trial,
    compare,
)
