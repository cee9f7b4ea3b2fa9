"""Two-stage ResNet50 melanoma classifier: the step logic behind the Kubeflow pipeline.

Every step is a plain, typed function that reads and writes files, so it can be called and
tested without Kubeflow; ``melanoma_pipelines`` wraps each one in a thin KFP component.
"""

import os

__version__ = "0.1.0"

MODEL_NAME = "melanoma-resnet50"
EXPERIMENT_NAME = "melanoma-two-stage"

#: A clinical-data pipeline does not phone home. MLflow 3 sends usage telemetry unless one of these
#: is set, and decides when ``mlflow`` is first imported: every entry point (the CLI, each step,
#: the app, the server) imports this package before mlflow, so they are set here. A value already
#: in the environment is left alone.
TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
for _key, _value in TELEMETRY_OFF.items():
    os.environ.setdefault(_key, _value)
