"""The Kubeflow layer: thin KFP components around the ``melanoma_mlops`` steps, the DAG, and the
local / compile / submit entry points. The same DAG runs under ``kfp.local`` and on a cluster.
"""

DEFAULT_IMAGE = "melanoma-mlops/pipeline:0.1.0"
PIPELINE_NAME = "melanoma-two-stage"
#: The pipelines ``melanoma-mlops compile --pipeline`` writes (melanoma_pipelines.compile builds them).
PIPELINES = ("two-stage", "ablation", "external-validation")
