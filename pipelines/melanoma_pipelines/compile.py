"""Compile the DAG to KFP IR YAML (the package a Kubeflow Pipelines cluster runs)."""

from __future__ import annotations

import logging
from pathlib import Path

from kfp import compiler

from . import DEFAULT_IMAGE
from .cluster import ClusterOptions, apply
from .dag import build_pipeline

logger = logging.getLogger(__name__)


def compile_pipeline(
    output: str | Path, image: str = DEFAULT_IMAGE, cluster: ClusterOptions | None = None
) -> Path:
    """Write the pipeline package; ``cluster`` adds GPUs, resources, secrets, caching, retries."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    options = cluster or ClusterOptions()
    pipeline = build_pipeline(image, customize=lambda tasks: apply(tasks, options))
    compiler.Compiler().compile(pipeline, str(output))
    logger.info("wrote %s (image %s, %d GPU(s) per training step)", output, image, options.gpus)
    return output
