"""The model's contract: what every consumer of a registered version may rely on.

Like a MONAI bundle's metadata, the contract travels with the model (``contract.json`` inside the
pyfunc and the MLflow model metadata). The register step writes it; the served pyfunc, the app, the
CLI's ``predict`` and the promotion gate read it through this one class, never by string keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from melanoma_mlops import __version__
from melanoma_mlops.data.labels import class_names

ACCEPTS = (
    "column 'image': encoded JPEG/PNG/BMP/GIF bytes, base64 text of them (JSON), or HxWx3 uint8 RGB arrays"
)
PREPROCESSING = (
    "decode to RGB, bilinear antialiased resize to image_size, truncate to uint8 (as the training input "
    "pipeline); ResNet50 caffe preprocessing inside the model"
)
#: Test metrics copied into the contract (and the version tags ``test_<metric>``).
CONTRACT_METRICS = ("auc_roc", "sensitivity", "specificity", "f1", "accuracy")


def task_classes(task: str) -> dict[str, str]:
    """``{"0": ..., "1": ...}``: the class names of a task (malignant vs benign by default)."""
    return {str(i): n for i, n in enumerate(class_names(task))}


@dataclass(frozen=True)
class ModelContract:
    """Input, output, class meaning, the frozen operating point and where the model came from."""

    image_size: int
    threshold: float
    threshold_rule: str = "unknown"
    target_sensitivity: float | None = None
    data_fingerprint: str = ""
    test_metrics: dict[str, float] = field(default_factory=dict)
    #: The task the labels came from: ``malignant`` (every malignant diagnosis is class 1) or
    #: ``melanoma`` (melanoma vs rest); it names the classes.
    task: str = "malignant"
    classes: dict[str, str] = field(default_factory=lambda: task_classes("malignant"))
    package_version: str = __version__

    def class_name(self, label: int) -> str:
        return self.classes.get(str(int(label)), str(label))

    def metric_tags(self, ci: dict[str, Any]) -> dict[str, str]:
        """The version tags of its test figures: ``test_<metric>``, then ``test_<metric>_ci_low|high``
        where ``ci`` (the evaluate step's 95% intervals) has both bounds."""
        tags = {f"test_{k}": f"{v:.6g}" for k, v in self.test_metrics.items()}
        for metric in self.test_metrics:
            low, high = ci.get(metric) or (None, None)
            if low is not None and high is not None:
                tags[f"test_{metric}_ci_low"], tags[f"test_{metric}_ci_high"] = f"{low:.6g}", f"{high:.6g}"
        return tags

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``contract.json``, MLflow model metadata)."""
        return {
            "input": {"image_size": int(self.image_size), "accepts": ACCEPTS, "preprocessing": PREPROCESSING},
            "output": {
                "probability": f"P(class 1 = {self.class_name(1)})",
                "label": "1 if probability >= threshold else 0",
            },
            "task": self.task,
            "classes": dict(self.classes),
            "threshold": float(self.threshold),
            "threshold_rule": self.threshold_rule,
            "target_sensitivity": self.target_sensitivity,
            "data_fingerprint": self.data_fingerprint,
            "test_metrics": dict(self.test_metrics),
            "package_version": self.package_version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelContract:
        """Read a contract (older contracts lack some keys: they get the defaults)."""
        defaults = cls(image_size=0, threshold=0.5)
        return cls(
            image_size=int(data["input"]["image_size"]),
            threshold=float(data["threshold"]),
            threshold_rule=str(data.get("threshold_rule") or defaults.threshold_rule),
            target_sensitivity=data.get("target_sensitivity"),
            data_fingerprint=str(data.get("data_fingerprint") or ""),
            test_metrics={k: float(v) for k, v in (data.get("test_metrics") or {}).items() if v is not None},
            task=str(data.get("task") or defaults.task),
            classes={str(k): str(v) for k, v in (data.get("classes") or defaults.classes).items()},
            package_version=str(data.get("package_version") or ""),
        )

    @classmethod
    def from_evaluation(
        cls, evaluation: dict[str, Any], image_size: int, fingerprint: str, task: str = "malignant"
    ) -> ModelContract:
        """The contract of a model from its evaluate step's ``evaluation.json`` and its data's task."""
        return cls(
            image_size=int(image_size),
            threshold=float(evaluation["threshold"]),
            threshold_rule=str(evaluation["threshold_rule"]),
            target_sensitivity=evaluation.get("target_sensitivity"),
            data_fingerprint=fingerprint,
            test_metrics={k: float(evaluation["test"][k]) for k in CONTRACT_METRICS},
            task=task,
            classes=task_classes(task),
        )


def calibration_tags(evaluation: dict[str, Any]) -> dict[str, str]:
    """Model-version tags saying how far the probability is from a risk: the test set's ECE and
    Brier score, and ``calibrated`` = false, because no step calibrates the network's output (the
    app and ``predict`` say so)."""
    calibration = evaluation.get("calibration") or {}
    tags = {"calibrated": "false"}
    for key in ("ece", "brier"):
        if calibration.get(key) is not None:
            tags[f"calibration_{key}"] = f"{float(calibration[key]):.6g}"
    return tags
