"""Two-stage ResNet50 melanoma classifier: the step logic behind the Kubeflow pipeline.

Every step is a plain, typed function that reads and writes files, so it can be called and
tested without Kubeflow; ``melanoma_pipelines`` wraps each one in a thin KFP component.
"""

__version__ = "0.1.0"

MODEL_NAME = "melanoma-resnet50"
EXPERIMENT_NAME = "melanoma-two-stage"
CLASS_NAMES = ("benign", "malignant")
