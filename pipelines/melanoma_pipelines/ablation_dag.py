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

Every component comes from the one component table (:mod:`melanoma_pipelines.components`) and
each branch is the main DAG's own :func:`~melanoma_pipelines.chain.training_chain`; this module
holds only the ablation's shape. There is no register step: the ablation never registers a model.
No ``from __future__ import annotations`` here: KFP reads the annotations as types.
"""

import inspect
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from kfp import dsl

from melanoma_mlops.config import RunConfig, field_names
from melanoma_mlops.experiments.ablation.design import (
    ARMS,
    VARIANTS,
    check_trials,
    experiment_env,
    trial_keys,
)

from . import DEFAULT_IMAGE
from .chain import training_chain, validation
from .components import build_components
from .params import ABLATION_GROUPS, group_arguments, pipeline_function

ABLATION_PIPELINE_NAME = "melanoma-ablation"
DESCRIPTION = (
    "Ablation: two-stage vs single-stage ResNet50 fine-tuning over seeds, with the published protocol's "
    "oversample-then-split leak as a LEAKY (negative control). Registers nothing."
)
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_TRIALS = trial_keys(VARIANTS, ["honest"], DEFAULT_SEEDS)
LEADING = (
    (
        inspect.Parameter("data", inspect.Parameter.KEYWORD_ONLY, annotation=str),
        "data folder, CSV or s3:// URI",
    ),
    (
        inspect.Parameter(
            "trials", inspect.Parameter.KEYWORD_ONLY, default=DEFAULT_TRIALS, annotation=list[str]
        ),
        "trials as protocol:variant:seed (e.g. honest:two_stage:0)",
    ),
    (
        inspect.Parameter("run_name", inspect.Parameter.KEYWORD_ONLY, default="", annotation=str),
        "MLflow parent run name",
    ),
)


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

    def body(p: SimpleNamespace) -> Any:
        tasks: dict[str, Any] = {}

        def named(key: str, task: Any, display: str | None = None) -> Any:
            tasks[key] = task
            for env_name, value in experiment_env().items():
                task.set_env_variable(env_name, value)
            return task.set_display_name(display or key)

        validated = validation(c, p, named)
        parent = named(
            "start_ablation",
            c.start_ablation(
                validate_run_id=validated.outputs["Output"], run_name=p.run_name, trials=p.trials,
                **group_arguments(p, *ABLATION_GROUPS),
            ),
        )  # fmt: skip
        with dsl.ParallelFor(p.trials, parallelism=parallelism or None) as trial:
            started = named(
                "start_trial", c.start_trial(ablation_run=parent.outputs["ablation_run"], trial=trial)
            )
            trial_run, seed = started.outputs["trial_run_id"], started.outputs["seed"]

            def arm_chain(arm: Any) -> Any:
                """One arm's chain inside its branch, down to the trial summary."""

                def step(name: str, task: Any) -> Any:
                    return named(f"{arm.key}/{name}", task, f"{arm.label}: {name}")

                chain = training_chain(
                    c, p, parent=trial_run, manifest=validated.outputs["manifest"], seed=seed,
                    variant=arm.variant, leaky=arm.leaky, step=step,
                )  # fmt: skip
                return step(
                    "summarize",
                    c.summarize(
                        trial_run_id=trial_run, trial=trial, evaluation=chain.evaluation, train=chain.train,
                        val=chain.val, test=chain.test,
                    ),
                )  # fmt: skip

            arm_key = started.outputs["Output"]
            *first, last = ARMS  # start_ablation refuses unknown arms, so Else is the last one
            summaries = []
            for i, arm in enumerate(first):
                branch = dsl.If(arm_key == arm.key) if i == 0 else dsl.Elif(arm_key == arm.key)
                with branch:
                    summaries.append(arm_chain(arm).outputs["Output"])
            with dsl.Else():
                summaries.append(arm_chain(last).outputs["Output"])
            finished = named(
                "finish_trial", c.finish_trial(trial_run_id=trial_run, summary=dsl.OneOf(*summaries))
            )
        compared = named(
            "compare",
            c.compare(
                ablation_run_id=parent.outputs["Output"], summaries=dsl.Collected(finished.outputs["Output"])
            ),
        )
        if customize is not None:
            customize(tasks)
        return compared.outputs["Output"]

    fn = pipeline_function(
        ABLATION_PIPELINE_NAME,
        DESCRIPTION,
        body,
        leading=LEADING,
        groups=ABLATION_GROUPS,
        seed=False,
        returns=str,
    )
    return dsl.pipeline(name=ABLATION_PIPELINE_NAME, description=DESCRIPTION)(fn)


def ablation_arguments(config: RunConfig, data: str, trials: list[str], **extra: Any) -> dict[str, Any]:
    """Pipeline arguments: the trials, the values of the groups the ablation reads, and extras.

    Seeds come per trial; the ablation neither explains, registers nor promotes, so the seed and
    the explanation and gate groups are not its parameters.
    """
    check_trials(trials)
    params = config.as_params() | {"single_stage_epochs": config.single_stage_epochs()}
    return {
        "data": data,
        "trials": list(trials),
        **{k: params[k] for k in field_names(*ABLATION_GROUPS)},
        **extra,
    }
