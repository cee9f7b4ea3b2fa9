"""The two-stage DAG: validate -> split -> oversample -> stage1 -> stage2 -> evaluate -> gradcam ->
register -> promote.

Parameter defaults come from :class:`melanoma_mlops.config.TrainConfig`, the one configuration
source, so the pipeline, the CLI and the library never disagree.
"""

import time
from collections.abc import Callable
from typing import Any

from kfp import dsl

from melanoma_mlops.config import TrainConfig

from . import DEFAULT_IMAGE, PIPELINE_NAME
from .components import build_components

D = TrainConfig()
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


def build_pipeline(
    image: str = DEFAULT_IMAGE, customize: Callable[[dict[str, Any]], None] | None = None
) -> Any:
    """The ``@dsl.pipeline`` of the protocol, its steps running in ``image``.

    ``customize`` receives the tasks by name before the pipeline is returned, which is how the
    cluster settings (GPUs, resources, secrets, retries) are applied without a second DAG.
    """
    c = build_components(image)

    @dsl.pipeline(name=PIPELINE_NAME, description="Two-stage ResNet50 melanoma classifier, leakage-proof.")
    def two_stage(
        data: str,
        layout: str = "auto",
        task: str = "malignant",
        run_name: str = "",
        val_fraction: float = D.val_fraction,
        test_fraction: float = D.test_fraction,
        seed: int = D.seed,
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
        patience: int = D.patience,
        bn_inference: bool = D.bn_inference,
        threshold_rule: str = D.threshold_rule,
        target_sensitivity: float = D.target_sensitivity,
        fixed_threshold: float = D.fixed_threshold,
        mixed_precision: str = D.mixed_precision,
        xla: str = D.xla,
        gradcam_samples: int = D.gradcam_samples,
        min_auc: float = D.min_auc,
        min_sensitivity: float = D.min_sensitivity,
        max_auc_drop: float = D.max_auc_drop,
        auto_promote: bool = D.auto_promote,
        model_name: str = D.model_name,
    ) -> str:
        validated = c.validate(
            data=data,
            layout=layout,
            task=task,
            min_image_size=min_image_size,
            run_name=run_name,
            kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        ).set_display_name("validate")
        parent = validated.outputs["Output"]
        splits = c.split(
            parent_run_id=parent,
            manifest=validated.outputs["manifest"],
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            seed=seed,
        ).set_display_name("split")
        balanced = c.oversample(
            parent_run_id=parent,
            train=splits.outputs["train"],
            val=splits.outputs["val"],
            test=splits.outputs["test"],
            seed=seed,
        ).set_display_name("oversample")
        s1 = c.stage1(
            parent_run_id=parent,
            train=balanced.outputs["balanced_train"],
            val=splits.outputs["val"],
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
        ).set_display_name("stage1")
        s2 = c.stage2(
            parent_run_id=parent,
            stage1_model=s1.outputs["model"],
            train=balanced.outputs["balanced_train"],
            val=splits.outputs["val"],
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
        ).set_display_name("stage2")
        ev = c.evaluate(
            parent_run_id=parent,
            model=s2.outputs["model"],
            val=splits.outputs["val"],
            test=splits.outputs["test"],
            image_size=image_size,
            batch_size=batch_size,
            threshold_rule=threshold_rule,
            target_sensitivity=target_sensitivity,
            fixed_threshold=fixed_threshold,
            seed=seed,
        ).set_display_name("evaluate")
        gc = c.gradcam(
            parent_run_id=parent,
            model=s2.outputs["model"],
            evaluation=ev.outputs["evaluation"],
            image_size=image_size,
            n_samples=gradcam_samples,
            seed=seed,
        ).set_display_name("gradcam")
        reg = c.register(
            parent_run_id=parent,
            model=s2.outputs["model"],
            evaluation=ev.outputs["evaluation"],
            explanations=gc.outputs["explanations"],
            train=splits.outputs["train"],
            val=splits.outputs["val"],
            test=splits.outputs["test"],
            model_name=model_name,
        ).set_display_name("register")
        gate = c.promote(
            parent_run_id=parent,
            evaluation=ev.outputs["evaluation"],
            test=splits.outputs["test"],
            model_name=model_name,
            candidate_version=reg.output,
            min_auc=min_auc,
            min_sensitivity=min_sensitivity,
            max_auc_drop=max_auc_drop,
            auto_promote=auto_promote,
            image_size=image_size,
            batch_size=batch_size,
        ).set_display_name("promote")
        if customize is not None:
            customize(
                dict(zip(TASK_ORDER, (validated, splits, balanced, s1, s2, ev, gc, reg, gate), strict=True))
            )
        return reg.output

    return two_stage


def pipeline_arguments(config: TrainConfig, data: str, **extra: Any) -> dict[str, Any]:
    """Pipeline arguments for one run: the config's values plus the data source and extras."""
    return {"data": data, **config.as_params(), **extra}


def default_run_name() -> str:
    """``two-stage-YYYYmmdd-HHMMSS``: the KFP run and MLflow parent run name when none is given."""
    return time.strftime("two-stage-%Y%m%d-%H%M%S")
