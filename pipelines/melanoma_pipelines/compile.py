"""Compile the DAG to KFP IR YAML (the package a Kubeflow Pipelines cluster runs)."""

from __future__ import annotations

import logging
from pathlib import Path

from kfp import compiler

from . import DEFAULT_IMAGE
from .dag import build_pipeline

logger = logging.getLogger(__name__)


def compile_pipeline(output: str | Path, image: str = DEFAULT_IMAGE) -> Path:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(image), str(output))
    logger.info("wrote %s (image %s)", output, image)
    return output
