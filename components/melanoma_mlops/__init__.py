"""Two-stage ResNet50 melanoma classifier: the step logic behind the Kubeflow pipeline.

Every step is a plain, typed function that reads and writes files, so it can be called and
tested without Kubeflow; ``melanoma_pipelines`` wraps each one in a thin KFP component.
"""

import os
import platform

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

#: TensorFlow's x86 builds use oneDNN's kernels by default only on CPUs with AVX512_VNNI, AVX512_BF16
#: or AMX; elsewhere (AVX2 CPUs such as the AMD EPYC Zen 3 these benchmarks ran on) they fall back to
#: Eigen's, measured 2.7x slower for Stage 2 (benchmarks/README.md). The switch is read when
#: TensorFlow is imported, so it is set here, before any step imports it; the results are the same to
#: rounding, and op determinism holds with it (tests/integration/test_training_determinism.py). A
#: value already in the environment is left alone (TF_ENABLE_ONEDNN_OPTS=0 turns it off).
ONEDNN_ON = {"TF_ENABLE_ONEDNN_OPTS": "1"}
if platform.machine().lower() in ("x86_64", "amd64"):
    for _key, _value in ONEDNN_ON.items():
        os.environ.setdefault(_key, _value)
