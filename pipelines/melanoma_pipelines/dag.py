"""The two-stage DAG: validate -> split -> oversample -> stage1 -> stage2 -> evaluate -> gradcam ->
register -> promote.

The middle (split ... evaluate) is :func:`melanoma_pipelines.chain.training_chain`, shared with the
ablation; the parameters are generated from the configuration (:mod:`melanoma_pipelines.params`).
"""

import inspect
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from kfp import dsl

from melanoma_mlops.config import RunConfig, field_names

from . import DEFAULT_IMAGE, PIPELINE_NAME
from .chain import training_chain, validation
from .components import build_components
from .params import MAIN_GROUPS, group_arguments, pipeline_function

TASK_ORDER = (
    "validate",
    "split",
    "oversample",
    "stage1",
    "stage2",
    "evaluate",
    "gradcam",
    "register",
    "promote",
)
DESCRIPTION = "Two-stage ResNet50 melanoma classifier, leakage-proof."
LEADING = (
    (
        inspect.Parameter("data", inspect.Parameter.KEYWORD_ONLY, annotation=str),
        "data folder, CSV or s3:// URI",
    ),
    (
        inspect.Parameter("run_name", inspect.Parameter.KEYWORD_ONLY, default="", annotation=str),
        "MLflow parent run name",
    ),
)


def build_pipeline(
    image: str = DEFAULT_IMAGE, customize: Callable[[dict[str, Any]], None] | None = None
) -> Any:
    """The ``@dsl.pipeline`` of the protocol, its steps running in ``image``.

    ``customize`` receives the tasks by name before the pipeline is returned, which is how the
    cluster settings (GPUs, resources, secrets, retries) are applied without a second DAG.
    """
    c = build_components(image)

    def body(p: SimpleNamespace) -> Any:
        tasks: dict[str, Any] = {}

        def step(name: str, task: Any) -> Any:
            tasks[name] = task
            return task.set_display_name(name)

        validated = validation(c, p, step)
        parent = validated.outputs["Output"]
        chain = training_chain(
            c, p, parent=parent, manifest=validated.outputs["manifest"], seed=p.seed, step=step
        )
        explained = step(
            "gradcam",
            c.gradcam(
                parent_run_id=parent, model=chain.model, evaluation=chain.evaluation, seed=p.seed,
                **group_arguments(p, "training", "explain"),
            ),
        )  # fmt: skip
        registered = step(
            "register",
            c.register(
                parent_run_id=parent, model=chain.model, evaluation=chain.evaluation,
                explanations=explained.outputs["explanations"], train=chain.split_train, val=chain.val,
                test=chain.test, **group_arguments(p, "gate"),
            ),
        )  # fmt: skip
        step(
            "promote",
            c.promote(
                parent_run_id=parent, evaluation=chain.evaluation, test=chain.test,
                candidate_version=registered.output, **group_arguments(p, "training", "gate"),
            ),
        )  # fmt: skip
        if customize is not None:
            customize(tasks)
        return registered.output

    fn = pipeline_function(
        PIPELINE_NAME, DESCRIPTION, body, leading=LEADING, groups=MAIN_GROUPS, seed=True, returns=str
    )
    return dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)(fn)


def pipeline_arguments(config: RunConfig, data: str, **extra: Any) -> dict[str, Any]:
    """Pipeline arguments for one run: the values of the groups the DAG reads, the data source, extras."""
    params = config.as_params()
    return {"data": data, **{k: params[k] for k in ["seed", *field_names(*MAIN_GROUPS)]}, **extra}


def default_run_name() -> str:
    """``two-stage-YYYYmmdd-HHMMSS``: the KFP run and MLflow parent run name when none is given."""
    return time.strftime("two-stage-%Y%m%d-%H%M%S")
