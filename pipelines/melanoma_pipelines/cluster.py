"""Kubernetes settings of the compiled pipelines: GPUs, resources, secrets, caching, retries.

Applied to the tasks of either DAG by *component* (``components.PROFILES``: a ``stage2`` task gets
the training profile whether it sits in the main DAG or in an ablation branch), so the local run
and the cluster run never drift apart. Nothing here is tied to one cloud: the accelerator resource,
node selectors and tolerations are options.

Caching is off for every step, on purpose: each step writes to the MLflow run of the pipeline run
that executes it (and receives that run's id), so a cache hit would either never happen (the run
id is new each time) or, if the id were removed from the inputs, skip the MLflow records of the new
run and link its lineage to another run's artifacts. A rerun of the same data costs minutes of
validation; a registry entry without its evidence costs trust.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kfp import kubernetes

from melanoma_mlops.errors import ConfigError

from .components import PROFILES

#: Component profiles (components.PROFILES) whose tasks get a GPU, and those retried with backoff.
GPU_PROFILES = ("train", "score")
RETRIED_PROFILES = ("train",)
# The pod label the NetworkPolicy in k8s/base lets through to MLflow.
MLFLOW_CLIENT_LABEL = ("melanoma-mlops/mlflow-client", "true")
MLFLOW_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
#: What every step reads from the MLflow client ConfigMap (k8s/pipeline-rbac/mlflow-client-config.yaml)
#: besides MLFLOW_TRACKING_URI: telemetry off (MLflow 3 phones home unless told not to). Optional, so
#: a ConfigMap of one's own without them still starts the pods (the package sets both by default).
TELEMETRY_ENV = ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK")
#: Also optional there: how long the steps wait out an MLflow outage (melanoma_mlops.tracking_client).
CLIENT_ENV = ("MELANOMA_MLFLOW_OUTAGE_WINDOW",)
DATA_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3")

# (cpu request, cpu limit, memory request, memory limit) per component. Training holds ResNet50
# and a decoded-image cache; validation streams images through a thread pool.
_SMALL = ("1", "2", "4Gi", "8Gi")
DEFAULT_RESOURCES: dict[str, tuple[str, str, str, str]] = {
    "validate": ("2", "4", "2Gi", "4Gi"),
    "split": ("500m", "1", "1Gi", "2Gi"),
    "oversample": ("500m", "1", "1Gi", "2Gi"),
    "leaky_split": ("500m", "1", "1Gi", "2Gi"),
    "stage1": ("4", "8", "16Gi", "32Gi"),
    "stage2": ("4", "8", "16Gi", "32Gi"),
    "single_stage": ("4", "8", "16Gi", "32Gi"),
    "evaluate": ("2", "4", "8Gi", "16Gi"),
    "gradcam": ("2", "4", "8Gi", "16Gi"),
    "register": _SMALL,
    "promote": ("2", "4", "8Gi", "16Gi"),
    "external_validation": ("2", "4", "8Gi", "16Gi"),  # the evaluate step's scoring, plus validation
    "start_ablation": _SMALL,
    "start_trial": _SMALL,
    "summarize": _SMALL,
    "finish_trial": _SMALL,
    "compare": _SMALL,
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


def component_of(task: Any) -> str:
    """The component a task runs (``stage2`` for the main DAG's task and every ablation branch's)."""
    return str(task.component_spec.name).replace("-", "_")


def apply(tasks: dict[str, Any], options: ClusterOptions) -> None:
    """Set resources, GPUs, scheduling, secrets-as-env, caching and retries on every task."""
    for task in tasks.values():
        name = component_of(task)
        profile = PROFILES[name]
        cpu_req, cpu_lim, mem_req, mem_lim = options.resources[name]
        task.set_cpu_request(cpu_req).set_cpu_limit(cpu_lim).set_memory_request(mem_req).set_memory_limit(
            mem_lim
        )
        kubernetes.add_pod_label(task, *MLFLOW_CLIENT_LABEL)
        kubernetes.use_config_map_as_env(
            task, options.mlflow_config_map, {"MLFLOW_TRACKING_URI": "MLFLOW_TRACKING_URI"}
        )
        kubernetes.use_config_map_as_env(
            task, options.mlflow_config_map, {k: k for k in (*TELEMETRY_ENV, *CLIENT_ENV)}, optional=True
        )
        # Credentials come from Secrets as environment variables, never as pipeline parameters
        # (parameters are stored in plain text with the run).
        kubernetes.use_secret_as_env(task, options.mlflow_secret, {k: k for k in MLFLOW_ENV}, optional=True)
        kubernetes.use_secret_as_env(task, options.data_secret, {k: k for k in DATA_ENV}, optional=True)
        task.set_caching_options(False)  # see the module docstring
        if profile in RETRIED_PROFILES and options.retries:
            task.set_retry(
                num_retries=options.retries,
                backoff_duration="60s",
                backoff_factor=2.0,
                backoff_max_duration="3600s",
            )
        if profile in GPU_PROFILES and options.gpus > 0:
            task.set_accelerator_type(options.accelerator).set_accelerator_limit(options.gpus)
            for key, value in options.node_selector.items():
                kubernetes.add_node_selector(task, key, value)
            for tol in options.tolerations:
                kubernetes.add_toleration(
                    task, key=tol.key, operator=tol.operator, value=tol.value, effect=tol.effect
                )
