"""Kubernetes settings of the compiled pipeline: GPUs, resources, secrets, caching, retries.

Applied to the tasks of the one DAG (``dag.build_pipeline(customize=...)``), so the local run and
the cluster run never drift apart. Nothing here is tied to one cloud: the accelerator resource,
node selectors and tolerations are options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kfp import kubernetes

from melanoma_mlops.errors import ConfigError

DATA_STEPS = ("validate", "split", "oversample")
GPU_STEPS = ("stage1", "stage2", "evaluate", "gradcam")
TRAINING_STEPS = ("stage1", "stage2")
# The pod label the NetworkPolicy in k8s/base lets through to MLflow.
MLFLOW_CLIENT_LABEL = ("melanoma-mlops/mlflow-client", "true")
MLFLOW_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
DATA_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3")

# (cpu request, cpu limit, memory request, memory limit) per step. Training holds ResNet50 and
# a decoded-image cache; validation streams images through a thread pool.
DEFAULT_RESOURCES: dict[str, tuple[str, str, str, str]] = {
    "validate": ("2", "4", "2Gi", "4Gi"),
    "split": ("500m", "1", "1Gi", "2Gi"),
    "oversample": ("500m", "1", "1Gi", "2Gi"),
    "stage1": ("4", "8", "16Gi", "32Gi"),
    "stage2": ("4", "8", "16Gi", "32Gi"),
    "evaluate": ("2", "4", "8Gi", "16Gi"),
    "gradcam": ("2", "4", "8Gi", "16Gi"),
    "register": ("1", "2", "4Gi", "8Gi"),
    "promote": ("2", "4", "8Gi", "16Gi"),
}


@dataclass(frozen=True)
class Toleration:
    key: str
    value: str | None
    effect: str
    operator: str = "Equal"

    @classmethod
    def parse(cls, text: str) -> Toleration:
        """``key=value:Effect`` or ``key:Effect`` (operator Exists)."""
        try:
            left, effect = text.rsplit(":", 1)
        except ValueError:
            raise ConfigError(f"--toleration {text!r}: expected key=value:Effect or key:Effect") from None
        if effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise ConfigError(
                f"--toleration {text!r}: effect must be NoSchedule, PreferNoSchedule or NoExecute"
            )
        if "=" in left:
            key, value = left.split("=", 1)
            return cls(key, value, effect)
        return cls(left, None, effect, operator="Exists")


def parse_node_selector(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(
                f"--node-selector {item!r}: expected key=value, e.g. nvidia.com/gpu.present=true"
            )
        key, value = item.split("=", 1)
        out[key] = value
    return out


@dataclass(frozen=True)
class ClusterOptions:
    """How the pipeline's pods are scheduled and what they may read."""

    gpus: int = 1
    accelerator: str = "nvidia.com/gpu"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    mlflow_config_map: str = "mlflow-client-config"
    mlflow_secret: str = "mlflow-client-credentials"
    data_secret: str = "pipeline-data-credentials"
    retries: int = 2
    resources: dict[str, tuple[str, str, str, str]] = field(default_factory=lambda: dict(DEFAULT_RESOURCES))

    def __post_init__(self) -> None:
        if self.gpus < 0:
            raise ConfigError(f"--gpus {self.gpus}: must be 0 (CPU) or more")
        if self.retries < 0:
            raise ConfigError(f"--retries {self.retries}: must be 0 or more")


def apply(tasks: dict[str, Any], options: ClusterOptions) -> None:
    """Set resources, GPUs, scheduling, secrets-as-env, caching and retries on every task."""
    for name, task in tasks.items():
        cpu_req, cpu_lim, mem_req, mem_lim = options.resources[name]
        task.set_cpu_request(cpu_req).set_cpu_limit(cpu_lim).set_memory_request(mem_req).set_memory_limit(
            mem_lim
        )
        kubernetes.add_pod_label(task, *MLFLOW_CLIENT_LABEL)
        kubernetes.use_config_map_as_env(
            task, options.mlflow_config_map, {"MLFLOW_TRACKING_URI": "MLFLOW_TRACKING_URI"}
        )
        # Credentials come from Secrets as environment variables, never as pipeline parameters
        # (parameters are stored in plain text with the run).
        kubernetes.use_secret_as_env(task, options.mlflow_secret, {k: k for k in MLFLOW_ENV}, optional=True)
        kubernetes.use_secret_as_env(task, options.data_secret, {k: k for k in DATA_ENV}, optional=True)
        # Data steps are deterministic functions of their inputs: cache them. Training and
        # registration have side effects in MLflow and must run every time.
        task.set_caching_options(name in DATA_STEPS)
        if name in TRAINING_STEPS and options.retries:
            task.set_retry(
                num_retries=options.retries,
                backoff_duration="60s",
                backoff_factor=2.0,
                backoff_max_duration="3600s",
            )
        if name in GPU_STEPS and options.gpus > 0:
            task.set_accelerator_type(options.accelerator).set_accelerator_limit(options.gpus)
            for key, value in options.node_selector.items():
                kubernetes.add_node_selector(task, key, value)
            for tol in options.tolerations:
                kubernetes.add_toleration(
                    task, key=tol.key, operator=tol.operator, value=tol.value, effect=tol.effect
                )
