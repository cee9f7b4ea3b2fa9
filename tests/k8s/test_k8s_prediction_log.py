"""The served endpoint's prediction log on the cluster: both serving targets (k8s/serving/kserve,
plain), deployed beside an overlay of k8s/overlays (gpu), write the log to the S3 prefix of the one
ConfigMap k8s/monitoring reads it from (k8s/prediction-log), with the keys of Secret
prediction-log-credentials as a rendered file; their pods reach MinIO's S3 port and nothing they did
not reach before; the repository's rules for every workload hold with them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import test_k8s
import yaml
from test_k8s import (
    IDENTITY_PROVIDER,
    K8S,
    KUBE_DNS,
    NAMESPACE,
    Endpoint,
    allowed,
    container_env,
    containers,
    one,
    pod_template,
    workloads,
)
from test_k8s_monitoring import RULES, monitoring
from test_k8s_serving import KSERVE_ONLY, rendered

from melanoma_mlops.serving import prediction_log
from melanoma_pipelines.cli.deploy import TARGETS

LOG_CONFIG = "prediction-log-config"
LOG_OBJECTS = (("ConfigMap", LOG_CONFIG), ("ConfigMap", "prediction-log-credential-files"))
SERVER = "melanoma-classifier"


def as_pod(obj: dict[str, Any]) -> dict[str, Any]:
    """An InferenceService as the pod KServe makes of it (its predictor, with the predictor's labels);
    anything else as it is."""
    if obj["kind"] != "InferenceService":
        return obj
    predictor = obj["spec"]["predictor"]
    metadata = {**obj["metadata"], "labels": {**obj["metadata"]["labels"], **predictor["labels"]}}
    spec = {k: v for k, v in predictor.items() if k not in KSERVE_ONLY}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def served(target: str) -> str:
    return f"gpu+{target}"


@pytest.fixture
def with_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """test_k8s's ``render`` answering gpu+TARGET with the gpu overlay plus that serving target."""
    original = test_k8s.render

    def render(overlay: str) -> tuple[dict[str, Any], ...]:
        base, _, target = overlay.partition("+")
        if target in TARGETS:
            return (*original(base), *(as_pod(o) for o in rendered(target)))
        return original(overlay)

    monkeypatch.setattr(test_k8s, "render", render)
    yield


def server(overlay: str) -> dict[str, Any]:
    (found,) = [o for o in workloads(overlay) if o["metadata"]["name"] == SERVER]
    return found


def test_the_log_location_is_declared_once_and_both_sides_get_it() -> None:
    declared = [
        path.relative_to(K8S).as_posix()
        for path in sorted(K8S.rglob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and (doc.get("kind"), doc.get("metadata", {}).get("name")) in LOG_OBJECTS
    ]
    assert declared == ["prediction-log/prediction-log-config.yaml"] * len(LOG_OBJECTS)

    def log_objects(objs: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
        return [o for o in objs if (o["kind"], o["metadata"]["name"]) in LOG_OBJECTS]

    assert len(log_objects(monitoring())) == len(LOG_OBJECTS)
    for target in TARGETS:
        assert log_objects(rendered(target)) == log_objects(monitoring()), target


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("rule", RULES)
def test_the_repositorys_rules_hold_with_the_server(rule: str, target: str, with_server: None) -> None:
    getattr(test_k8s, rule)(served(target))


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_the_server_writes_the_log_where_the_monitor_reads_it(target: str, with_server: None) -> None:
    overlay = served(target)
    obj = server(overlay)
    pod = pod_template(obj)
    main = pod["spec"]["containers"][0]
    env = container_env(overlay, obj, main)
    config = one(overlay, "ConfigMap", LOG_CONFIG)["data"]
    assert env[prediction_log.LOG_ENV] == config[prediction_log.LOG_ENV]
    assert config[prediction_log.LOG_ENV].startswith("s3://")
    assert env["AWS_ENDPOINT_URL_S3"] == config["AWS_ENDPOINT_URL_S3"]
    assert env[prediction_log.SOURCE_ENV] == SERVER
    # The keys: Secret prediction-log-credentials rendered by the init container into the in-memory
    # volume the server reads (boto3's credentials file), as the monitor CronJob gets them.
    assert env["AWS_SHARED_CREDENTIALS_FILE"] == "/tmp/.mlflow/aws-credentials"
    (init,) = [c for kind, c in containers(pod) if kind == "initContainers"]
    assert "/etc/prediction-log-files/aws-credentials" in init["command"]
    secrets = {v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v}
    assert secrets == {"mlflow-client-credentials", "prediction-log-credentials"}


def _reachable(overlay: str, src: Endpoint) -> set[tuple[str, int, str]]:
    """Every (destination, port, protocol) of the overlay's pods, DNS and the outside ``src`` may open."""
    candidates: list[tuple[str, Endpoint, int, str]] = [
        ("kube-dns", KUBE_DNS, 53, "UDP"),
        ("kube-dns", KUBE_DNS, 53, "TCP"),
        ("outside", IDENTITY_PROVIDER, 443, "TCP"),
        ("outside", IDENTITY_PROVIDER, 80, "TCP"),
    ]
    for obj in workloads(overlay):
        pod = pod_template(obj)
        dst = Endpoint.pod(obj["metadata"]["namespace"], pod["metadata"]["labels"])
        for _, c in containers(pod):
            for port in c.get("ports", []):
                candidates.append(
                    (obj["metadata"]["name"], dst, port["containerPort"], port.get("protocol", "TCP"))
                )
    return {
        (name, port, proto)
        for name, dst, port, proto in candidates
        if allowed(overlay, src, dst, port, proto)
    }


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_the_server_reaches_minio_and_nothing_new_else(target: str, with_server: None) -> None:
    overlay = served(target)
    pod = pod_template(server(overlay))
    labels = pod["metadata"]["labels"]
    src = Endpoint.pod(NAMESPACE, labels)
    reach = _reachable(overlay, src)
    assert reach == {
        ("mlflow", 5000, "TCP"),
        ("minio", 9000, "TCP"),
        ("kube-dns", 53, "UDP"),
        ("kube-dns", 53, "TCP"),
    }, reach
    # Without the MinIO client label the pod reaches what it did before this change: MLflow and DNS.
    without = Endpoint.pod(NAMESPACE, {k: v for k, v in labels.items() if k != "melanoma-mlops/minio-client"})
    assert reach - _reachable(overlay, without) == {("minio", 9000, "TCP")}
