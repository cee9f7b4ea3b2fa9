"""The daily monitor CronJob (k8s/monitoring), deployed beside an overlay of k8s/overlays (gpu): it
validates strictly, checkov finds nothing, and the repository's rules for every workload
(tests/k8s/test_k8s.py: resources, non-root, Secrets as files, telemetry off, documented Secrets,
default-deny NetworkPolicies) hold for the overlay with it; its pod reaches MLflow, MinIO and DNS
and nothing else, and runs `monitor` on the champion with the log location of the ConfigMap."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
import test_k8s
from test_k8s import (
    IDENTITY_PROVIDER,
    K8S,
    KUBE_DNS,
    NAMESPACE,
    Endpoint,
    _pod,
    allowed,
    container_env,
    one,
    pod_template,
)
from test_k8s_checkov import assert_checkov_clean
from test_k8s_serving import kustomize

from melanoma_mlops import MODEL_NAME
from melanoma_mlops.serving import prediction_log

# k8s/overlays/gpu with k8s/monitoring applied beside it (the local overlay pulls our images
# IfNotPresent for kind, which k8s/monitoring, like k8s/serving, does not patch).
MONITORED = "gpu+monitoring"
#: The repository's rules for every workload and Secret, run on the overlay with the CronJob.
RULES = (
    "test_overlay_renders_and_every_object_validates_strictly",
    "test_objects_land_in_the_intended_namespaces",
    "test_every_container_has_cpu_and_memory_requests_and_limits",
    "test_every_container_runs_non_root_without_privileges",
    "test_writable_paths_of_read_only_containers_are_volumes",
    "test_images_are_pinned_by_digest_unless_we_build_them",
    "test_images_are_pulled_always_except_our_own_on_a_laptop",
    "test_every_checkov_skip_gives_its_reason",
    "test_secrets_reach_containers_as_files",
    "test_telemetry_is_off_in_every_container",
    "test_no_rendered_secret_carries_a_value",
    "test_every_secret_reference_is_documented_by_a_template",
    "test_network_policies_deny_by_default_in_both_directions",
)


@cache
def monitoring() -> tuple[dict[str, Any], ...]:
    return tuple(kustomize(K8S / "monitoring"))


@pytest.fixture
def monitored(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """test_k8s.s ``render`` answering MONITORED with the gpu overlay plus k8s/monitoring."""
    original = test_k8s.render

    def render(overlay: str) -> tuple[dict[str, Any], ...]:
        return (*original("gpu"), *monitoring()) if overlay == MONITORED else original(overlay)

    monkeypatch.setattr(test_k8s, "render", render)
    yield MONITORED


@pytest.mark.parametrize("rule", RULES)
def test_the_repositorys_rules_hold_with_the_cronjob(rule: str, monitored: str) -> None:
    getattr(test_k8s, rule)(monitored)


def test_the_cronjob_monitors_the_champion_daily_and_reaches_only_mlflow_and_minio(monitored: str) -> None:
    cronjob = one(monitored, "CronJob", "melanoma-monitor")
    spec = cronjob["spec"]
    assert spec["schedule"].split()[2:] == ["*", "*", "*"] and spec["concurrencyPolicy"] == "Forbid"
    pod = pod_template(cronjob)
    (main,) = pod["spec"]["containers"]
    assert main["args"] == ["monitor", "--model-uri", f"models:/{MODEL_NAME}@champion", "--since", "7d"]
    # Drift (exit 1) fails the Job at once: the alert, not a retry.
    (rule,) = spec["jobTemplate"]["spec"]["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [1]
    env = container_env(monitored, cronjob, main)
    config = one(monitored, "ConfigMap", "prediction-log-config")["data"]
    assert env[prediction_log.LOG_ENV] == config[prediction_log.LOG_ENV]
    assert config[prediction_log.LOG_ENV].startswith("s3://")
    job = Endpoint.pod(NAMESPACE, pod["metadata"]["labels"])
    mlflow, minio = _pod(monitored, "Deployment", "mlflow"), _pod(monitored, "StatefulSet", "minio")
    postgres, app = _pod(monitored, "StatefulSet", "postgres"), _pod(monitored, "Deployment", "app")
    assert allowed(monitored, job, mlflow, 5000) and allowed(monitored, job, minio, 9000)
    assert allowed(monitored, job, KUBE_DNS, 53, "UDP")
    for dst, port in ((postgres, 5432), (app, 8501), (IDENTITY_PROVIDER, 443), (minio, 9001)):
        assert not allowed(monitored, job, dst, port), dst


def test_checkov_finds_no_failed_check(tmp_path) -> None:
    assert_checkov_clean(list(monitoring()), tmp_path / "monitoring.yaml", min_resources=3)
