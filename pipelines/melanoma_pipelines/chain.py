"""What both DAGs run: validation, then the training chain (prepare the data -> train -> evaluate).

The main DAG runs it once (honest data, two stages); the ablation runs it in each branch of its
``ParallelFor`` (honest or leaky data, two stages or one). One function, so the two DAGs cannot
drift apart. ``step`` names each task (and lets the caller collect it, e.g. for cluster settings).
No ``from __future__ import annotations``: this module builds KFP tasks.
"""

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from .params import group_arguments

Step = Callable[[str, Any], Any]


@dataclass
class ChainOutputs:
    """What the chain hands to the steps after it (KFP output channels)."""

    #: The split's training manifest (before oversampling; the leaky control's oversampled one).
    split_train: Any
    #: The manifest the model trained on (oversampled).
    train: Any
    val: Any
    test: Any
    model: Any
    evaluation: Any


def _named(name: str, task: Any) -> Any:
    return task.set_display_name(name)


def validation(c: SimpleNamespace, p: SimpleNamespace, step: Step = _named) -> Any:
    """The validate task both DAGs start with (it opens the MLflow parent run)."""
    from kfp import dsl

    return step(
        "validate",
        c.validate(
            data=p.data, run_name=p.run_name, kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            **group_arguments(p, "data"),
        ),
    )  # fmt: skip


def training_chain(
    c: SimpleNamespace,
    p: SimpleNamespace,
    *,
    parent: Any,
    manifest: Any,
    seed: Any,
    variant: str = "two_stage",
    leaky: bool = False,
    step: Step = _named,
) -> ChainOutputs:
    """Tasks from the validated manifest to the evaluation, parented on the MLflow run ``parent``.

    ``c``: the components (``components.build_components``); ``p``: the pipeline parameters, passed
    on by configuration group (``group_arguments``); ``variant``: ``two_stage`` (stage1 -> stage2)
    or ``single_stage``; ``leaky``: the published oversample-then-split (the ablation's negative
    control) instead of split -> oversample.
    """
    data_args = group_arguments(p, "data")
    if leaky:
        prepared = step(
            "leaky_split", c.leaky_split(parent_run_id=parent, manifest=manifest, seed=seed, **data_args)
        )
        split_train = train = prepared.outputs["train"]
        val, test = prepared.outputs["val"], prepared.outputs["test"]
    else:
        splits = step("split", c.split(parent_run_id=parent, manifest=manifest, seed=seed, **data_args))
        split_train, val, test = (splits.outputs[k] for k in ("train", "val", "test"))
        balanced = step(
            "oversample",
            c.oversample(parent_run_id=parent, train=split_train, val=val, test=test, seed=seed),
        )
        train = balanced.outputs["balanced_train"]
    data = {"parent_run_id": parent, "train": train, "val": val, "seed": seed}
    training = group_arguments(p, "training")
    if variant == "two_stage":
        s1 = step("stage1", c.stage1(**data, **training))
        trained = step("stage2", c.stage2(**data, **training, stage1_model=s1.outputs["model"]))
    else:
        trained = step(
            "single_stage", c.single_stage(**data, **training, **group_arguments(p, "single_stage"))
        )
    evaluated = step(
        "evaluate",
        c.evaluate(
            parent_run_id=parent, model=trained.outputs["model"], val=val, test=test, seed=seed,
            **training, **group_arguments(p, "evaluation"),
        ),
    )  # fmt: skip
    return ChainOutputs(
        split_train, train, val, test, trained.outputs["model"], evaluated.outputs["evaluation"]
    )
