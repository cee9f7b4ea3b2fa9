"""The one typed configuration source, split by concern and composed into :class:`RunConfig`.

The CLI options, the pipeline parameters (both DAGs) and the library defaults are all generated
from these dataclasses, so they can never disagree. Each field carries its help text and range;
field names are unique across the groups, so a run's configuration is also one flat mapping
(CLI flags, KFP pipeline parameters, MLflow params).

Which DAG reads which group is declared in the pipeline layer and checked by a test that walks the
compiled pipelines: the main DAG reads every group except :class:`SingleStageConfig`; the ablation
reads data, training, single-stage and evaluation (its seeds come per trial).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from melanoma_mlops.errors import ConfigError

#: The data layouts (data/sources/layouts.py TABLE; a test checks the two agree; docs/data.md).
LAYOUTS = ("auto", "folder", "manifest", "isic", "isic2024", "challenge", "ham10000", "bcn20000",
           "pad-ufes-20", "ddi", "fitzpatrick17k")  # fmt: skip
TASKS = ("malignant", "melanoma")
THRESHOLD_RULES = ("sensitivity", "youden", "fixed")
SWITCH_VALUES = ("auto", "on", "off")
PRECISION_VALUES = ("auto", "on", "off", "float16", "bfloat16")
IMAGE_CACHES = ("auto", "memory", "shards")


def _opt(default: Any, help: str, **bounds: Any) -> Any:
    return field(default=default, metadata={"help": help, **bounds})


def option_name(field_name: str) -> str:
    """The CLI flag of a field, without dashes: ``stage1_lr`` -> ``stage1-lr``."""
    return field_name.replace("_", "-")


class ConfigGroup:
    """Shared behaviour of the concern groups: range checks, flat dict, replace."""

    title: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
            if lo is not None and not (lo <= value <= hi):
                raise ConfigError(
                    f"--{option_name(f.name)} {value} is outside [{lo}, {hi}]: {f.metadata['help']}"
                )
            choices = f.metadata.get("choices")
            if choices is not None and value not in choices:
                raise ConfigError(f"--{option_name(f.name)} {value!r} is not one of {', '.join(choices)}")
        self.check()

    def check(self) -> None:
        """Cross-field rules; raise :class:`ConfigError` naming the options."""

    def as_params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class DataConfig(ConfigGroup):
    """How the data source is read and split."""

    title: ClassVar[str] = "data"
    layout: str = _opt(
        "auto", "data layout: auto (from the CSV header or class folders) or one of these (docs/data.md)",
        choices=LAYOUTS,
    )  # fmt: skip
    task: str = _opt(
        "malignant",
        "malignant (malignant vs benign) or melanoma (melanoma vs rest; needs the diagnosis in the metadata)",
        choices=TASKS,
    )
    val_fraction: float = _opt(0.15, "share of images (by group) held out for validation", lo=0.05, hi=0.4)
    test_fraction: float = _opt(0.15, "share of images (by group) held out for test", lo=0.05, hi=0.4)
    min_image_size: int = _opt(32, "smallest accepted image side in pixels (validation)", lo=8, hi=4096)
    allow_outside_root: bool = _opt(
        False,
        "let a manifest CSV name images outside the folder holding it, and symlinks in the data folder "
        "lead out of it (refused by default, before any such file is opened: links are reported as "
        "excluded, manifest rows as an error)",
    )

    def check(self) -> None:
        if self.val_fraction + self.test_fraction >= 0.8:
            raise ConfigError(
                f"--val-fraction {self.val_fraction} + --test-fraction {self.test_fraction} leave under 20% "
                "for training; lower one of them"
            )


@dataclass(frozen=True)
class TrainingConfig(ConfigGroup):
    """The network, its input pipeline and the two-stage schedule (Stage 1 head, Stage 2 all layers)."""

    title: ClassVar[str] = "training (defaults follow the published protocol)"
    image_size: int = _opt(224, "side of the square network input in pixels", lo=32, hi=1024)
    batch_size: int = _opt(
        32,
        "images per training batch on each device (with N GPUs the global batch is N x this and the "
        "learning rates are scaled by N: the linear scaling rule)",
        lo=1,
        hi=1024,
    )
    weights: str = _opt(
        "imagenet",
        "ResNet50 initial weights: 'imagenet', 'none', or a path/s3:// URI of a .h5/.weights.h5 file",
    )
    dropout: float = _opt(0.5, "dropout rate before the classification head", lo=0.0, hi=0.9)
    augment: bool = _opt(
        True, "random flips/rotation/zoom/contrast on training images (on the training device, in the model)"
    )
    stage1_lr: float = _opt(1e-3, "Stage 1 (head only, base frozen) Adam learning rate", lo=1e-7, hi=1.0)
    stage1_epochs: int = _opt(10, "Stage 1 maximum epochs", lo=1, hi=1000)
    stage2_lr: float = _opt(1e-5, "Stage 2 (all layers) Adam learning rate", lo=1e-8, hi=1.0)
    stage2_epochs: int = _opt(20, "Stage 2 maximum epochs", lo=0, hi=1000)
    patience: int = _opt(3, "early-stopping patience in epochs on validation AUC", lo=1, hi=100)
    bn_inference: bool = _opt(
        True, "keep BatchNorm layers in inference mode while fine-tuning (Keras transfer-learning guide)"
    )
    mixed_precision: str = _opt(
        "auto",
        "mixed-precision training (float32 weights): auto = float16 on GPUs with tensor cores (compute "
        "capability >= 7), bfloat16 on CPUs with native bf16 (avx512_bf16/amx_bf16), float32 otherwise | "
        "on (the hardware's kind even without a known gain) | off | float16 | bfloat16",
        choices=PRECISION_VALUES,
    )
    xla: str = _opt(
        "auto",
        "XLA-compile the training step: auto (on when a GPU is present) | on | off",
        choices=SWITCH_VALUES,
    )
    deterministic: str = _opt(
        "auto",
        "TensorFlow op determinism (same seed, same result): auto (on without a GPU; GPU kernels are "
        "not all bit-exact) | on | off",
        choices=SWITCH_VALUES,
    )
    image_cache: str = _opt(
        "auto",
        "where training keeps decoded images between epochs: memory (each unique image once in RAM) | "
        "shards (resized uint8 TFRecord shards written once under --shard-root, memory-mapped; data larger "
        "than RAM) | auto (memory when the unique images fit 2 GiB, else shards)",
        choices=IMAGE_CACHES,
    )
    shard_root: str = _opt(
        "",
        "folder or s3:// prefix of the image shards, keyed by data fingerprint and image size and reused "
        "across steps and runs (empty: ~/.cache/melanoma-mlops/shards)",
    )

    def check(self) -> None:
        if not self.weights:
            raise ConfigError("--weights is empty: use 'imagenet', 'none' or a path to a weights file")


@dataclass(frozen=True)
class SingleStageConfig(ConfigGroup):
    """The ablation's baseline: every layer trainable from the first epoch, one learning rate."""

    title: ClassVar[str] = "single-stage baseline (ablation only)"
    single_stage_lr: float = _opt(
        1e-4,
        "Adam learning rate of single-stage fine-tuning: between the head rate and the Stage 2 rate; an "
        "untuned prior, sweep it",
        lo=1e-8,
        hi=1.0,
    )
    single_stage_epochs: int = _opt(
        0, "single-stage maximum epochs; 0 = stage1 + stage2 epochs (the same budget)", lo=0, hi=2000
    )

    def budget(self, training: TrainingConfig) -> int:
        """The single-stage epochs: this setting, or stage1 + stage2 epochs when it is 0."""
        return self.single_stage_epochs or training.stage1_epochs + training.stage2_epochs


@dataclass(frozen=True)
class EvaluationConfig(ConfigGroup):
    """How the operating point is frozen on validation before test is looked at."""

    title: ClassVar[str] = "evaluation"
    threshold_rule: str = _opt(
        "sensitivity",
        "how the decision threshold is chosen on validation: sensitivity | youden | fixed",
        choices=THRESHOLD_RULES,
    )
    target_sensitivity: float = _opt(
        0.90, "with --threshold-rule sensitivity: the sensitivity the threshold must reach", lo=0.5, hi=1.0
    )
    fixed_threshold: float = _opt(0.5, "with --threshold-rule fixed: the threshold", lo=0.0, hi=1.0)
    age_bands: str = _opt(
        "30,50,70",
        "age-band edges in years for the performance-by-subgroup table: '30,50,70' gives <30, 30-49, "
        "50-69, >=70 (whole years, increasing)",
    )
    slice_min_positives: int = _opt(
        5,
        "fewest class-1 test images a subgroup needs for its metrics (and the gate's per-subgroup "
        "comparison); below it the subgroup is reported as insufficient, with its counts only",
        lo=1,
        hi=100_000,
    )
    slice_min_negatives: int = _opt(
        5,
        "fewest class-0 test images a subgroup needs for its metrics (and the gate's per-subgroup "
        "comparison); below it the subgroup is reported as insufficient, with its counts only",
        lo=1,
        hi=100_000,
    )

    def check(self) -> None:
        self.age_edges()

    def age_edges(self) -> tuple[int, ...]:
        """The age-band edges of ``age_bands`` (``"30,50,70"`` -> ``(30, 50, 70)``)."""
        text = self.age_bands.replace(" ", "")
        parts = text.split(",") if text else []
        if not parts or not all(re.fullmatch(r"\d{1,3}", p) for p in parts):
            raise ConfigError(
                f"--age-bands {self.age_bands!r} is not a comma-separated list of whole years, e.g. 30,50,70"
            )
        edges = tuple(int(p) for p in parts)
        if any(b <= a for a, b in itertools.pairwise(edges)) or edges[0] < 1 or edges[-1] > 120:
            raise ConfigError(f"--age-bands {self.age_bands!r}: the edges must increase, within 1-120 years")
        return edges


@dataclass(frozen=True)
class ExplainConfig(ConfigGroup):
    """Grad-CAM on test images."""

    title: ClassVar[str] = "explanation"
    gradcam_samples: int = _opt(
        16, "test images explained with Grad-CAM (spread over TP/FP/FN/TN)", lo=1, hi=512
    )


@dataclass(frozen=True)
class GateConfig(ConfigGroup):
    """The promotion gate and the registry: limits apply to lower 95% bounds, never to point estimates."""

    title: ClassVar[str] = "promotion gate and registry"
    min_auc: float = _opt(
        0.80,
        "promotion gate: lowest test AUC a new model may have, as the lower bound of its 0.95 interval",
        lo=0.0,
        hi=1.0,
    )
    min_sensitivity: float = _opt(
        0.85,
        "promotion gate: lowest test sensitivity at the frozen threshold (lower bound of its 0.95 interval)",
        lo=0.0,
        hi=1.0,
    )
    min_specificity: float = _opt(
        0.50,
        "promotion gate: lowest test specificity at the frozen threshold (lower bound of its 0.95 "
        "interval); below it the model refers most benign lesions",
        lo=0.0,
        hi=1.0,
    )
    max_auc_drop: float = _opt(
        0.02,
        "promotion gate: non-inferiority margin vs the champion: the lower bound of the 0.95 interval of "
        "the paired AUC difference (candidate - champion, same test images, bootstrap by group) must be "
        "above -this",
        lo=0.0,
        hi=1.0,
    )
    min_test_positives: int = _opt(
        30, "promotion gate: fewest malignant test images before any automatic promotion", lo=0, hi=100_000
    )
    min_test_negatives: int = _opt(
        30, "promotion gate: fewest benign test images before any automatic promotion", lo=0, hi=100_000
    )
    max_slice_drop: float = _opt(
        0.05,
        "promotion gate: per-subgroup non-inferiority margin vs the champion: in every subgroup with "
        "enough test images of both classes (--slice-min-positives/--slice-min-negatives), the lower bound "
        "of the 0.95 interval of the paired difference (candidate - champion) in AUC and in sensitivity "
        "must be above -this, or the candidate is held",
        lo=0.0,
        hi=1.0,
    )
    auto_promote: bool = _opt(True, "make a model that passes the gate @champion (otherwise only recommend)")
    model_name: str = _opt("melanoma-resnet50", "registered model name in the MLflow registry")


@dataclass(frozen=True)
class ExternalConfig(ConfigGroup):
    """External validation (``melanoma-mlops evaluate``): a registered model on another data set."""

    title: ClassVar[str] = "external validation (evaluate only)"
    on_overlap: str = _opt(
        "exclude",
        "an evaluated image that copies (same sha256, or near-duplicate hash) one of the model's own "
        "train/val/test images: exclude (left out and listed in overlaps.csv) | fail (refuse the set)",
        choices=("exclude", "fail"),
    )
    external_experiment: str = _opt("melanoma-external-validation", "MLflow experiment of evaluate's runs")


#: The concern groups in the order the CLI shows them; RunConfig has one attribute per group.
GROUPS: dict[str, type[ConfigGroup]] = {
    "data": DataConfig,
    "training": TrainingConfig,
    "single_stage": SingleStageConfig,
    "evaluation": EvaluationConfig,
    "explain": ExplainConfig,
    "gate": GateConfig,
    "external": ExternalConfig,
}


def _default(name: str) -> ConfigGroup:
    """A group's defaults, from the class GROUPS names (the one place a group is declared)."""
    return GROUPS[name]()


SEED_HELP = "seed of the split, oversampling, augmentation and weight init"
SEED_RANGE = (0, 2**31 - 1)


@dataclass(frozen=True)
class RunConfig:
    """One pipeline run's configuration: a seed plus one value of each concern group."""

    seed: int = 42
    data: DataConfig = field(default_factory=lambda: _default("data"))
    training: TrainingConfig = field(default_factory=lambda: _default("training"))
    single_stage: SingleStageConfig = field(default_factory=lambda: _default("single_stage"))
    evaluation: EvaluationConfig = field(default_factory=lambda: _default("evaluation"))
    explain: ExplainConfig = field(default_factory=lambda: _default("explain"))
    gate: GateConfig = field(default_factory=lambda: _default("gate"))
    external: ExternalConfig = field(default_factory=lambda: _default("external"))

    def __post_init__(self) -> None:
        lo, hi = SEED_RANGE
        if not lo <= self.seed <= hi:
            raise ConfigError(f"--seed {self.seed} is outside [{lo}, {hi}]: {SEED_HELP}")

    def as_params(self) -> dict[str, Any]:
        """Every value as one flat dict (CLI, KFP pipeline arguments, MLflow params)."""
        out: dict[str, Any] = {"seed": self.seed}
        for name in GROUPS:
            out.update(getattr(self, name).as_params())
        return out

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> RunConfig:
        """Build from a flat mapping; unknown keys are an error (a typo must not be ignored)."""
        unknown = set(params) - set(field_names())
        if unknown:
            raise ConfigError(f"unknown option(s) {sorted(unknown)}")
        groups = {
            name: group(**{f.name: params[f.name] for f in dataclasses.fields(group) if f.name in params})
            for name, group in GROUPS.items()
        }
        return cls(seed=int(params.get("seed", cls.seed)), **groups)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with some flat fields changed (``replace(stage1_epochs=1)``)."""
        return RunConfig.from_params({**self.as_params(), **changes})

    def single_stage_epochs(self) -> int:
        """The single-stage budget: its own setting, or stage1 + stage2 epochs when that is 0."""
        return self.single_stage.budget(self.training)


_KINDS: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}


def kind_of(f: dataclasses.Field[Any]) -> type:
    """A setting's Python type (int, float, str or bool), whether annotated as text or as a class."""
    return _KINDS[f.type if isinstance(f.type, str) else f.type.__name__]


def field_names(*groups: str) -> list[str]:
    """Flat field names of the named groups (all groups and ``seed`` when none are named)."""
    names = ["seed"] if not groups else []
    for name in groups or tuple(GROUPS):
        names += [f.name for f in dataclasses.fields(GROUPS[name])]
    return names


# The embedded demo: small synthetic images, few epochs (`make run` in minutes on 2 CPU cores); only
# without --data, for options the user did not set. Training only: the gate keeps its limits (docs/demo.md).
DEMO_PRESET: dict[str, Any] = {"image_size": 64, "batch_size": 32, "weights": "none", "stage1_epochs": 8,
                               "stage2_epochs": 4, "patience": 3}  # fmt: skip
DEMO_IMAGES = 600
