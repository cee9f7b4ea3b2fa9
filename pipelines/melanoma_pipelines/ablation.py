"""The ablation as ONE KFP pipeline: validate once, then a ``ParallelFor`` over trials, then compare.

Shape::

    validate -> start_ablation -> ParallelFor(trial in trials)            -> compare
                                    start_trial (arm, run id, seed)          (dsl.Collected of
                                    If arm == honest:two_stage                every trial summary)
                                       split -> oversample -> stage1 -> stage2 -> evaluate -> summarize
                                    Elif arm == honest:single_stage
                                       split -> oversample -> single_stage -> evaluate -> summarize
                                    Elif arm == leaky:two_stage        LEAKY (negative control)
                                       leaky_split -> stage1 -> stage2 -> evaluate -> summarize
                                    Else (leaky:single_stage)          LEAKY (negative control)
                                       leaky_split -> single_stage -> evaluate -> summarize
                                    finish_trial(dsl.OneOf(summaries))

Why this shape, measured with kfp 2.17 under ``kfp.local`` (it runs ParallelFor, If/Elif/Else,
``dsl.OneOf`` and ``dsl.Collected`` in its enhanced orchestrator):

* Loop items are strings (``honest:two_stage:0``), not dicts: locally a condition on a dict item's
  field (``item.variant == ...``) cannot be resolved, and integer fields arrive as floats.
* The branch condition reads ``start_trial``'s single ``Output``: the local orchestrator resolves
  conditions on a task's ``Output`` but not on other named outputs.
* The ablation's run id enters the loop as a small *artifact* (``ablation_run``), not as a
  parameter: kfp 2.17's local loop expansion (``create_parameter_loop_iteration_task_spec``)
  replaces every task-output *parameter* that feeds a ParallelFor with the loop item itself.
* Each branch runs its own chain down to ``summarize``, and only the summary (a string) leaves the
  branch through ``dsl.OneOf``: locally ``dsl.OneOf`` of *artifacts* fails ("Expected 1 artifact in
  ArtifactSelectorSpec. Got: 4"), of parameters it works.

The validate/split/oversample/stage1/stage2/evaluate components are the main pipeline's own
(:func:`melanoma_pipelines.components.build_components`); the new steps are thin wrappers around
:mod:`melanoma_mlops.ablation`. There is no register step: the ablation never registers a model.
No ``from __future__ import annotations`` here: KFP reads the annotations as types.
"""

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Model, Output, OutputPath
from mlflow.tracking import MlflowClient

from melanoma_mlops import ablation as lib
from melanoma_mlops import tracking
from melanoma_mlops.config import TrainConfig

from . import DEFAULT_IMAGE
from .components import build_components
from .local import execute
from .runtime import ERROR_FILE_ENV

logger = logging.getLogger(__name__)

ABLATION_PIPELINE_NAME = "melanoma-ablation"
D = TrainConfig()
DEFAULT_SEEDS = (0, 1, 2)
# TrainConfig fields the ablation pipeline has no parameter for.
NOT_ABLATION_PARAMS = (
    "seed",
    "gradcam_samples",
    "model_name",
    "min_auc",
    "min_sensitivity",
    "max_auc_drop",
    "auto_promote",
)
DEFAULT_TRIALS = lib.trial_keys(lib.VARIANTS, ["honest"], DEFAULT_SEEDS)
DEFAULT_SINGLE_STAGE_EPOCHS = lib.single_stage_epochs_default(D.stage1_epochs, D.stage2_epochs)


# --------------------------------------------------------------------------------------------
# components of the new steps (bodies import the library and call run_step, nothing else)
# --------------------------------------------------------------------------------------------


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
    from melanoma_mlops.ablation import start_ablation_step, write_run_handle
    from melanoma_pipelines.runtime import run_step

    settings = {
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "image_size": image_size,
        "batch_size": batch_size,
        "weights": weights,
        "dropout": dropout,
        "augment": augment,
        "stage1_lr": stage1_lr,
        "stage1_epochs": stage1_epochs,
        "stage2_lr": stage2_lr,
        "stage2_epochs": stage2_epochs,
        "single_stage_lr": single_stage_lr,
        "single_stage_epochs": single_stage_epochs,
        "patience": patience,
        "bn_inference": bn_inference,
        "threshold_rule": threshold_rule,
        "target_sensitivity": target_sensitivity,
    }
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
    ablation_run: Input[Artifact], trial: str, trial_run_id: OutputPath(str), seed: OutputPath(int)
) -> str:
    """Open the trial's MLflow run; the returned arm key (protocol:variant) picks the branch."""
    from melanoma_mlops.ablation import read_run_handle, start_trial_step
    from melanoma_pipelines.runtime import run_step

    arm, run_id, trial_seed = run_step(
        "start_trial", start_trial_step, read_run_handle(ablation_run.path), trial
    )
    with open(trial_run_id, "w", encoding="utf-8") as fh:
        fh.write(run_id)
    with open(seed, "w", encoding="utf-8") as fh:
        fh.write(str(trial_seed))
    return arm


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
    from melanoma_mlops.ablation import leaky_split_step
    from melanoma_pipelines.runtime import run_step

    run_step(
        "leaky_split",
        leaky_split_step,
        manifest.path,
        train.path,
        val.path,
        test.path,
        parent_run_id=parent_run_id,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )


def single_stage(
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
    bn_inference: bool,
    seed: int,
    mixed_precision: str,
    xla: str,
    model: Output[Model],
):
    """Single-stage fine-tuning: every layer trainable from the first epoch, one learning rate."""
    from melanoma_mlops.ablation import single_stage
    from melanoma_pipelines.runtime import run_step

    run_step(
        "single_stage",
        single_stage,
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
        bn_inference=bn_inference,
        seed=seed,
        mixed_precision=mixed_precision,
        xla=xla,
    )


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
    from melanoma_mlops.ablation import summarize_trial_step
    from melanoma_pipelines.runtime import run_step

    return run_step(
        "summarize",
        summarize_trial_step,
        evaluation.path,
        train.path,
        val.path,
        test.path,
        summary.path,
        trial_run_id=trial_run_id,
        trial=trial,
    )


def finish_trial(trial_run_id: str, summary: str) -> str:
    """Close the trial's MLflow run and hand its summary to the comparison."""
    from melanoma_mlops.ablation import finish_trial_step
    from melanoma_pipelines.runtime import run_step

    return run_step("finish_trial", finish_trial_step, trial_run_id, summary)


def compare(
    ablation_run_id: str, summaries: list[str], report: Output[Artifact], table: Output[Markdown]
) -> str:
    """Mean ± sd per arm, paired differences with 95% intervals; logged on the ablation parent run."""
    import os

    from melanoma_mlops.ablation import REPORT_MD, compare_step
    from melanoma_pipelines.runtime import run_step

    run_step("compare", compare_step, ablation_run_id, summaries, report.path)
    with open(os.path.join(report.path, REPORT_MD), encoding="utf-8") as src:
        text = src.read()
    with open(table.path, "w", encoding="utf-8") as dst:
        dst.write(text)
    return ablation_run_id


STEPS = (start_ablation, start_trial, leaky_split, single_stage, summarize, finish_trial, compare)


def build_ablation_components(image: str) -> SimpleNamespace:
    """KFP components of the ablation's own steps, running in ``image``."""
    return SimpleNamespace(
        **{fn.__name__: dsl.component(fn, base_image=image, install_kfp_package=False) for fn in STEPS}
    )


# --------------------------------------------------------------------------------------------
# the pipeline
# --------------------------------------------------------------------------------------------


def build_ablation_pipeline(
    image: str = DEFAULT_IMAGE,
    parallelism: int = 0,
    customize: Callable[[dict[str, Any]], None] | None = None,
) -> Any:
    """The ``@dsl.pipeline`` of the ablation, its steps running in ``image``.

    ``parallelism`` caps how many trials run at once (0: no cap; on a cluster each training trial
    wants its own GPU). ``customize`` receives every task by name before the pipeline is returned --
    ``validate``, ``start_ablation``, ``start_trial``, ``finish_trial``, ``compare`` and
    ``<protocol>:<variant>/<step>`` (e.g. ``honest:two_stage/stage2``) -- which is where GPUs,
    resources and secrets are set, as for the main DAG.
    """
    c = build_components(image)
    a = build_ablation_components(image)

    @dsl.pipeline(
        name=ABLATION_PIPELINE_NAME,
        description="Ablation: two-stage vs single-stage ResNet50 fine-tuning over seeds, with the "
        "published protocol's oversample-then-split leak as a LEAKY (negative control). Registers nothing.",
    )
    def ablation(
        data: str,
        trials: list[str] = DEFAULT_TRIALS,
        layout: str = "auto",
        task: str = "malignant",
        run_name: str = "",
        val_fraction: float = D.val_fraction,
        test_fraction: float = D.test_fraction,
        min_image_size: int = D.min_image_size,
        image_size: int = D.image_size,
        batch_size: int = D.batch_size,
        weights: str = D.weights,
        dropout: float = D.dropout,
        augment: bool = D.augment,
        stage1_lr: float = D.stage1_lr,
        stage1_epochs: int = D.stage1_epochs,
        stage2_lr: float = D.stage2_lr,
        stage2_epochs: int = D.stage2_epochs,
        single_stage_lr: float = lib.SINGLE_STAGE_LR,
        single_stage_epochs: int = DEFAULT_SINGLE_STAGE_EPOCHS,
        patience: int = D.patience,
        bn_inference: bool = D.bn_inference,
        threshold_rule: str = D.threshold_rule,
        target_sensitivity: float = D.target_sensitivity,
        fixed_threshold: float = D.fixed_threshold,
        mixed_precision: str = D.mixed_precision,
        xla: str = D.xla,
    ) -> str:
        tasks: dict[str, Any] = {}

        def named(key: str, task: Any, display: str | None = None) -> Any:
            tasks[key] = task
            for env_name, value in lib.experiment_env().items():
                task.set_env_variable(env_name, value)
            return task.set_display_name(display or key)

        validated = named(
            "validate",
            c.validate(
                data=data,
                layout=layout,
                task=task,
                min_image_size=min_image_size,
                run_name=run_name,
                kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            ),
        )
        parent = named(
            "start_ablation",
            a.start_ablation(
                validate_run_id=validated.outputs["Output"],
                run_name=run_name,
                trials=trials,
                val_fraction=val_fraction,
                test_fraction=test_fraction,
                image_size=image_size,
                batch_size=batch_size,
                weights=weights,
                dropout=dropout,
                augment=augment,
                stage1_lr=stage1_lr,
                stage1_epochs=stage1_epochs,
                stage2_lr=stage2_lr,
                stage2_epochs=stage2_epochs,
                single_stage_lr=single_stage_lr,
                single_stage_epochs=single_stage_epochs,
                patience=patience,
                bn_inference=bn_inference,
                threshold_rule=threshold_rule,
                target_sensitivity=target_sensitivity,
            ),
        )
        ablation_run = parent.outputs["Output"]
        manifest = validated.outputs["manifest"]

        with dsl.ParallelFor(trials, parallelism=parallelism or None) as trial:
            started = named(
                "start_trial", a.start_trial(ablation_run=parent.outputs["ablation_run"], trial=trial)
            )
            trial_run = started.outputs["trial_run_id"]
            seed = started.outputs["seed"]

            def arm_chain(arm: lib.Arm) -> Any:
                """Prepare data, train, evaluate, summarize: one arm's chain inside its branch."""
                label = arm.label

                def step(name: str, task: Any) -> Any:
                    return named(f"{arm.key}/{name}", task, f"{label}: {name}")

                if arm.leaky:
                    prepared = step(
                        "leaky_split",
                        a.leaky_split(
                            parent_run_id=trial_run,
                            manifest=manifest,
                            val_fraction=val_fraction,
                            test_fraction=test_fraction,
                            seed=seed,
                        ),
                    )
                    train, val, test = (prepared.outputs[k] for k in ("train", "val", "test"))
                else:
                    splits = step(
                        "split",
                        c.split(
                            parent_run_id=trial_run,
                            manifest=manifest,
                            val_fraction=val_fraction,
                            test_fraction=test_fraction,
                            seed=seed,
                        ),
                    )
                    val, test = splits.outputs["val"], splits.outputs["test"]
                    balanced = step(
                        "oversample",
                        c.oversample(
                            parent_run_id=trial_run,
                            train=splits.outputs["train"],
                            val=val,
                            test=test,
                            seed=seed,
                        ),
                    )
                    train = balanced.outputs["balanced_train"]
                if arm.variant == "two_stage":
                    s1 = step(
                        "stage1",
                        c.stage1(
                            parent_run_id=trial_run,
                            train=train,
                            val=val,
                            image_size=image_size,
                            batch_size=batch_size,
                            weights=weights,
                            dropout=dropout,
                            augment=augment,
                            lr=stage1_lr,
                            epochs=stage1_epochs,
                            patience=patience,
                            seed=seed,
                            mixed_precision=mixed_precision,
                            xla=xla,
                        ),
                    )
                    trained = step(
                        "stage2",
                        c.stage2(
                            parent_run_id=trial_run,
                            stage1_model=s1.outputs["model"],
                            train=train,
                            val=val,
                            image_size=image_size,
                            batch_size=batch_size,
                            augment=augment,
                            lr=stage2_lr,
                            epochs=stage2_epochs,
                            patience=patience,
                            bn_inference=bn_inference,
                            seed=seed,
                            mixed_precision=mixed_precision,
                            xla=xla,
                        ),
                    )
                else:
                    trained = step(
                        "single_stage",
                        a.single_stage(
                            parent_run_id=trial_run,
                            train=train,
                            val=val,
                            image_size=image_size,
                            batch_size=batch_size,
                            weights=weights,
                            dropout=dropout,
                            augment=augment,
                            lr=single_stage_lr,
                            epochs=single_stage_epochs,
                            patience=patience,
                            bn_inference=bn_inference,
                            seed=seed,
                            mixed_precision=mixed_precision,
                            xla=xla,
                        ),
                    )
                evaluated = step(
                    "evaluate",
                    c.evaluate(
                        parent_run_id=trial_run,
                        model=trained.outputs["model"],
                        val=val,
                        test=test,
                        image_size=image_size,
                        batch_size=batch_size,
                        threshold_rule=threshold_rule,
                        target_sensitivity=target_sensitivity,
                        fixed_threshold=fixed_threshold,
                        seed=seed,
                    ),
                )
                return step(
                    "summarize",
                    a.summarize(
                        trial_run_id=trial_run,
                        trial=trial,
                        evaluation=evaluated.outputs["evaluation"],
                        train=train,
                        val=val,
                        test=test,
                    ),
                )

            arm_key = started.outputs["Output"]
            *first, last = lib.ARMS  # start_ablation refuses unknown arms, so Else is the last one
            summaries = []
            for i, arm in enumerate(first):
                branch = dsl.If(arm_key == arm.key) if i == 0 else dsl.Elif(arm_key == arm.key)
                with branch:
                    summaries.append(arm_chain(arm).outputs["Output"])
            with dsl.Else():
                summaries.append(arm_chain(last).outputs["Output"])
            finished = named(
                "finish_trial",
                a.finish_trial(trial_run_id=trial_run, summary=dsl.OneOf(*summaries)),
            )
        compared = named(
            "compare",
            a.compare(ablation_run_id=ablation_run, summaries=dsl.Collected(finished.outputs["Output"])),
        )
        if customize is not None:
            customize(tasks)
        return compared.outputs["Output"]

    return ablation


# Which main-pipeline step's cluster settings (resources, GPU, caching, retries: cluster.py) each
# ablation step takes. The bookkeeping steps write to MLflow, so they get register's profile:
# small, never cached, no GPU.
CLUSTER_ROLE = {
    "validate": "validate",
    "split": "split",
    "oversample": "oversample",
    "leaky_split": "split",
    "stage1": "stage1",
    "stage2": "stage2",
    "single_stage": "stage2",
    "evaluate": "evaluate",
    "start_ablation": "register",
    "start_trial": "register",
    "summarize": "register",
    "finish_trial": "register",
    "compare": "register",
}


def apply_cluster(tasks: dict[str, Any], options: Any) -> None:
    """Apply :func:`melanoma_pipelines.cluster.apply` to every ablation task by its step's role."""
    from .cluster import apply

    for key, task in tasks.items():
        apply({CLUSTER_ROLE[key.rsplit("/", 1)[-1]]: task}, options)


def compile_ablation_pipeline(
    output: str | Path, image: str = DEFAULT_IMAGE, cluster: Any = None, parallelism: int = 0
) -> Path:
    """Write the ablation's KFP IR YAML with the cluster settings of ``cluster`` (a ClusterOptions)."""
    from kfp import compiler

    from .cluster import ClusterOptions

    options = cluster or ClusterOptions()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    pipeline = build_ablation_pipeline(
        image, parallelism=parallelism, customize=lambda tasks: apply_cluster(tasks, options)
    )
    compiler.Compiler().compile(pipeline, str(output))
    logger.info("wrote %s (image %s, at most %s trials at once)", output, image, parallelism or "all")
    return output


def ablation_arguments(
    config: TrainConfig,
    data: str,
    trials: list[str],
    *,
    single_stage_lr: float = lib.SINGLE_STAGE_LR,
    single_stage_epochs: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Pipeline arguments: the config's values that the ablation uses, the trials and extras.

    ``seed``, ``gradcam_samples``, ``model_name`` and the promotion gate's options are not
    parameters: seeds come per trial, and the ablation neither explains, registers nor promotes.
    """
    lib.check_trials(trials)
    params = {k: v for k, v in config.as_params().items() if k not in NOT_ABLATION_PARAMS}
    epochs = single_stage_epochs or lib.single_stage_epochs_default(
        config.stage1_epochs, config.stage2_epochs
    )
    return {
        "data": data,
        "trials": list(trials),
        **params,
        "single_stage_lr": single_stage_lr,
        "single_stage_epochs": epochs,
        **extra,
    }


# --------------------------------------------------------------------------------------------
# local run
# --------------------------------------------------------------------------------------------


@dataclass
class AblationResult:
    ablation_run_id: str
    markdown: str
    comparison: dict[str, Any]
    report_dir: Path
    seconds: float


def run_ablation_local(
    config: TrainConfig,
    data: str,
    trials: list[str],
    *,
    single_stage_lr: float = lib.SINGLE_STAGE_LR,
    single_stage_epochs: int | None = None,
    layout: str = "auto",
    task: str = "malignant",
    pipeline_root: str | Path = "local_outputs",
    run_name: str | None = None,
    parallelism: int = 1,
    report_dir: str | Path = "ablation_report",
) -> AblationResult:
    """Run the ablation pipeline (the same one a cluster runs) under ``kfp.local``.

    ``parallelism`` trials at a time (kfp.local caps it at 2): on a small CPU machine one TensorFlow
    process already uses every core. The comparison is downloaded from the ablation's MLflow run
    into ``report_dir``.
    """
    run_name = run_name or time.strftime("ablation-%Y%m%d-%H%M%S")
    arguments = ablation_arguments(
        config,
        data,
        trials,
        single_stage_lr=single_stage_lr,
        single_stage_epochs=single_stage_epochs,
        layout=layout,
        task=task,
        run_name=run_name,
    )
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", ERROR_FILE_ENV, *lib.experiment_env())}
    # Steps run in subprocesses: pin the store and the experiment they inherit.
    os.environ["MLFLOW_TRACKING_URI"] = tracking.tracking_uri()
    os.environ.update(lib.experiment_env())
    lib.ablation_experiment_id()
    start = time.perf_counter()
    try:
        task_ = execute(
            build_ablation_pipeline(parallelism=parallelism),
            arguments,
            pipeline_root=pipeline_root,
            on_failure=lambda: _fail_open_runs(run_name),
        )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    seconds = time.perf_counter() - start
    ablation_run_id = str(task_.output)
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    MlflowClient().download_artifacts(ablation_run_id, "ablation", str(out))
    folder = out / "ablation"
    comparison = json.loads((folder / lib.REPORT_JSON).read_text())
    return AblationResult(
        ablation_run_id, (folder / lib.REPORT_MD).read_text(), comparison, folder.resolve(), seconds
    )


def _fail_open_runs(run_name: str) -> None:
    """Mark the ablation parent and its trials FAILED if a step died before closing them."""
    client = MlflowClient()
    exp = client.get_experiment_by_name(lib.ABLATION_EXPERIMENT)
    if exp is None:
        return
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"attributes.run_name = '{run_name}' and tags.pipeline = 'ablation'",
    )
    for parent in runs:
        for run in [parent, *lib.descendants(client, parent.info.run_id)]:
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, status="FAILED")


def summary_lines(result: AblationResult) -> list[str]:
    """What ``melanoma-mlops ablation`` prints after the table."""
    return [
        f"MLflow ablation run: {result.ablation_run_id}  (experiment {lib.ABLATION_EXPERIMENT}, "
        f"tracking URI {tracking.tracking_uri()})",
        f"report files ({lib.REPORT_MD}, {lib.REPORT_CSV}, {lib.REPORT_JSON}, {lib.TRIALS_CSV}) in "
        f"{result.report_dir}",
        "no model was registered (the ablation has no register step)",
        f"pipeline wall time: {result.seconds:.0f} s",
    ]
