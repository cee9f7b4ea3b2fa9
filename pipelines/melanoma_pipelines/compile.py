"""Compile either DAG to KFP IR YAML (the package a Kubeflow Pipelines cluster runs)."""

from __future__ import annotations

import logging
from pathlib import Path

from kfp import compiler

from . import DEFAULT_IMAGE, PIPELINES
from .ablation_dag import build_ablation_pipeline
from .cluster import ClusterOptions, apply
from .dag import build_pipeline
from .external_dag import EXTERNAL_PIPELINE_NAME, build_external_pipeline

logger = logging.getLogger(__name__)


def compile_pipeline(
    output: str | Path,
    image: str = DEFAULT_IMAGE,
    cluster: ClusterOptions | None = None,
    *,
    pipeline: str = "two-stage",
    parallelism: int = 0,
) -> Path:
    """Write a pipeline package; ``cluster`` adds GPUs, resources, secrets, retries.

    ``pipeline``: ``two-stage`` (the main DAG), ``ablation`` (``parallelism`` caps its trials) or
    ``external-validation`` (``melanoma-mlops evaluate`` as a pipeline).
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    options = cluster or ClusterOptions()

    def customize(tasks: dict) -> None:
        apply(tasks, options)

    if pipeline == "two-stage":
        built = build_pipeline(image, customize=customize)
    elif pipeline == "ablation":
        built = build_ablation_pipeline(image, parallelism=parallelism, customize=customize)
    elif pipeline == EXTERNAL_PIPELINE_NAME:
        built = build_external_pipeline(image, customize=customize)
    else:
        raise ValueError(f"pipeline {pipeline!r} is not one of {', '.join(PIPELINES)}")
    compiler.Compiler().compile(built, str(output))
    logger.info("wrote %s (%s, image %s, %d GPU(s) per training step)", output, pipeline, image, options.gpus)
    return output
