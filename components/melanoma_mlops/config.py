"""The one typed configuration source: the CLI options, the pipeline parameters and the library
defaults all come from :class:`TrainConfig`, so they can never disagree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

THRESHOLD_RULES = ("sensitivity", "youden", "fixed")
SWITCH_VALUES = ("auto", "on", "off")


def _opt(default: Any, help: str, **bounds: Any) -> Any:
    return field(default=default, metadata={"help": help, **bounds})


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one pipeline run (the protocol of arXiv 2606.17504, leakage fixed)."""

    val_fraction: float = _opt(0.15, "share of images (by group) held out for validation", lo=0.05, hi=0.4)
    test_fraction: float = _opt(0.15, "share of images (by group) held out for test", lo=0.05, hi=0.4)
    seed: int = _opt(42, "seed of the split, oversampling, augmentation and weight init", lo=0, hi=2**31 - 1)
    min_image_size: int = _opt(32, "smallest accepted image side in pixels (validation)", lo=8, hi=4096)
    image_size: int = _opt(224, "side of the square network input in pixels", lo=32, hi=1024)
    batch_size: int = _opt(32, "images per training batch", lo=1, hi=1024)
    weights: str = _opt(
        "imagenet",
        "ResNet50 initial weights: 'imagenet', 'none', or a path/s3:// URI of a .h5/.weights.h5 file",
    )
    dropout: float = _opt(0.5, "dropout rate before the classification head", lo=0.0, hi=0.9)
    augment: bool = _opt(True, "random flips/rotation/zoom/contrast on training images")
    stage1_lr: float = _opt(1e-3, "Stage 1 (head only, base frozen) Adam learning rate", lo=1e-7, hi=1.0)
    stage1_epochs: int = _opt(10, "Stage 1 maximum epochs", lo=1, hi=1000)
    stage2_lr: float = _opt(1e-5, "Stage 2 (all layers) Adam learning rate", lo=1e-8, hi=1.0)
    stage2_epochs: int = _opt(20, "Stage 2 maximum epochs", lo=0, hi=1000)
    patience: int = _opt(3, "early-stopping patience in epochs on validation AUC", lo=1, hi=100)
    bn_inference: bool = _opt(
        True, "keep BatchNorm layers in inference mode while fine-tuning (Keras transfer-learning guide)"
    )
    threshold_rule: str = _opt(
        "sensitivity", "how the decision threshold is chosen on validation: sensitivity | youden | fixed"
    )
    target_sensitivity: float = _opt(
        0.90, "with --threshold-rule sensitivity: the sensitivity the threshold must reach", lo=0.5, hi=1.0
    )
    fixed_threshold: float = _opt(0.5, "with --threshold-rule fixed: the threshold", lo=0.0, hi=1.0)
    mixed_precision: str = _opt(
        "auto", "float16 compute with float32 weights in training: auto (on when a GPU is present) | on | off"
    )
    xla: str = _opt("auto", "XLA-compile the training step: auto (on when a GPU is present) | on | off")
    gradcam_samples: int = _opt(
        16, "test images explained with Grad-CAM (spread over TP/FP/FN/TN)", lo=1, hi=512
    )
    min_auc: float = _opt(0.80, "promotion gate: lowest test AUC a new model may have", lo=0.0, hi=1.0)
    min_sensitivity: float = _opt(
        0.85, "promotion gate: lowest test sensitivity at the frozen threshold", lo=0.0, hi=1.0
    )
    max_auc_drop: float = _opt(
        0.02, "promotion gate: largest AUC drop allowed vs the champion on the same test set", lo=0.0, hi=1.0
    )
    auto_promote: bool = _opt(True, "make a model that passes the gate @champion (otherwise only recommend)")
    model_name: str = _opt("melanoma-resnet50", "registered model name in the MLflow registry")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first option outside its range."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
            if lo is not None and not (lo <= value <= hi):
                raise ConfigError(
                    f"--{option_name(f.name)} {value} is outside [{lo}, {hi}]: {f.metadata['help']}"
                )
        if self.val_fraction + self.test_fraction >= 0.8:
            raise ConfigError(
                f"--val-fraction {self.val_fraction} + --test-fraction {self.test_fraction} leave under 20% "
                "for training; lower one of them"
            )
        if self.threshold_rule not in THRESHOLD_RULES:
            raise ConfigError(
                f"--threshold-rule {self.threshold_rule!r} is not one of {', '.join(THRESHOLD_RULES)}"
            )
        for name in ("mixed_precision", "xla"):
            if getattr(self, name) not in SWITCH_VALUES:
                value = getattr(self, name)
                raise ConfigError(f"--{option_name(name)} {value!r} is not one of auto, on, off")
        if not self.weights:
            raise ConfigError("--weights is empty: use 'imagenet', 'none' or a path to a weights file")

    def as_params(self) -> dict[str, Any]:
        """The values as a flat dict (MLflow params, pipeline arguments)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def option_name(field_name: str) -> str:
    return field_name.replace("_", "-")


# The embedded demo: small synthetic images and few epochs so `make run` finishes in minutes on
# 2 CPU cores. Used only when no --data is given, and only for options the user did not set.
DEMO_PRESET: dict[str, Any] = {
    "image_size": 64,
    "batch_size": 32,
    "weights": "none",
    "stage1_epochs": 8,
    "stage2_epochs": 4,
    "patience": 3,
    # 18 malignant test images: one miss more or less moves sensitivity by 0.056.
    "min_sensitivity": 0.80,
}
DEMO_IMAGES = 600
