"""The Kubeflow layer: thin KFP components around the ``melanoma_mlops`` steps, the DAG, and the
local / compile / submit entry points. The same DAG runs under ``kfp.local`` and on a cluster.
"""

DEFAULT_IMAGE = "melanoma-mlops/pipeline:0.1.0"
PIPELINE_NAME = "melanoma-two-stage"
