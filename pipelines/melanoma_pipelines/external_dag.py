"""The ``external-validation`` pipeline: ``melanoma-mlops evaluate`` as one KFP task, for the cluster.

One task, the component :func:`~melanoma_pipelines.components.external_validation`, which calls the
same step function the command calls (:func:`melanoma_mlops.steps.external.external_step`): the
data validated, audited against the model's own images, scored at the frozen threshold, and
recorded as its own MLflow run with ``external.NAME.*`` tags on the version. Its inputs are the
model URI, the data source, the data set's name, the seed and the fields of the groups the step
reads (:data:`~melanoma_pipelines.params.EXTERNAL_GROUPS`), less the training-only ones. On a
cluster the task gets the scoring profile (GPU, resources, MLflow and data credentials) by
component name, like the main DAG's ``evaluate``. No ``from __future__ import annotations`` here:
KFP reads the annotations as types.
"""

import inspect
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from kfp import dsl

from melanoma_mlops import MODEL_NAME
from melanoma_mlops.artifacts import CHAMPION
from melanoma_mlops.config import RunConfig, field_names

from . import DEFAULT_IMAGE
from .components import build_components
from .params import EXTERNAL_GROUPS, EXTERNAL_TRAINING_ONLY, group_arguments, pipeline_function

EXTERNAL_PIPELINE_NAME = "external-validation"
DESCRIPTION = (
    "External validation: a registered model on another labelled data set (overlaps with the model's "
    "own images left out or refused), recorded as its own MLflow run and as tags on the version."
)
LEADING = (
    (
        inspect.Parameter("data", inspect.Parameter.KEYWORD_ONLY, annotation=str),
        "the external data set: folder, manifest CSV or s3:// prefix",
    ),
    (
        inspect.Parameter("name", inspect.Parameter.KEYWORD_ONLY, annotation=str),
        "the data set's name (the version's tags external.NAME.*)",
    ),
    (
        inspect.Parameter(
            "model_uri",
            inspect.Parameter.KEYWORD_ONLY,
            default=f"models:/{MODEL_NAME}@{CHAMPION}",
            annotation=str,
        ),
        "the registered version: models:/NAME@ALIAS or models:/NAME/N",
    ),
)


def build_external_pipeline(
    image: str = DEFAULT_IMAGE, customize: Callable[[dict[str, Any]], None] | None = None
) -> Any:
    """The ``@dsl.pipeline`` of external validation, its task running in ``image``; ``customize``
    receives the task by name (``external_validation``), as for the other DAGs."""
    c = build_components(image)

    def body(p: SimpleNamespace) -> Any:
        task = c.external_validation(
            model_uri=p.model_uri, data=p.data, name=p.name, seed=p.seed,
            **group_arguments(p, *EXTERNAL_GROUPS, exclude=EXTERNAL_TRAINING_ONLY),
        )  # fmt: skip
        if customize is not None:
            customize({"external_validation": task})
        return task.outputs["Output"]

    fn = pipeline_function(
        EXTERNAL_PIPELINE_NAME, DESCRIPTION, body, leading=LEADING, groups=EXTERNAL_GROUPS, seed=True,
        returns=str, exclude=EXTERNAL_TRAINING_ONLY,
    )  # fmt: skip
    return dsl.pipeline(name=EXTERNAL_PIPELINE_NAME, description=DESCRIPTION)(fn)


def external_arguments(config: RunConfig, model_uri: str, data: str, name: str) -> dict[str, Any]:
    """Pipeline arguments of one external validation: the model, the data, its name and the settings."""
    params = config.as_params()
    fields = [f for f in field_names(*EXTERNAL_GROUPS) if f not in EXTERNAL_TRAINING_ONLY]
    return {"model_uri": model_uri, "data": data, "name": name, **{k: params[k] for k in ["seed", *fields]}}
