"""The Kubernetes manifests: each overlay renders, validates strictly, and keeps the security rules.

No cluster is needed: `kubectl kustomize` renders offline and kubernetes-validate ships the schemas.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "k8s"
OVERLAYS = ("local", "gpu")
# The API version the manifests are checked against (a schema shipped by kubernetes-validate;
# also the client version of the kubectl on the team's machines). Nothing used here is newer.
K8S_VERSION = "1.32.0"
NAMESPACE = "melanoma-mlops"
PIPELINE_NAMESPACE = "kubeflow"
PLACEHOLDER = "REPLACE_ME"
MLFLOW_CLIENT_LABEL = ("melanoma-mlops/mlflow-client", "true")
MINIO_CLIENT_LABEL = ("melanoma-mlops/minio-client", "true")
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod", "ReplicaSet"}

pytestmark = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl (with kustomize) is not installed"
)


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize k8s/overlays/{overlay} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def objects(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [o for o in render(overlay) if o["kind"] == kind]


def one(overlay: str, kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects(overlay, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name} in {overlay}, found {len(found)}"
    return found[0]


def pod_template(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod (metadata + spec) a workload creates."""
    if obj["kind"] == "Pod":
        return obj
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    return obj["spec"]["template"]


def workloads(overlay: str) -> Iterator[dict[str, Any]]:
    return (o for o in render(overlay) if o["kind"] in WORKLOAD_KINDS)


def containers(pod: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    spec = pod["spec"]
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key, []):
            yield key, c


def _id(overlay: str, obj: dict[str, Any], container: dict[str, Any] | None = None) -> str:
    name = f"{overlay}:{obj['kind']}/{obj['metadata']['name']}"
    return f"{name}[{container['name']}]" if container else name


# --------------------------------------------------------------------------- rendering and schemas


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_every_object_validates_strictly(overlay):
    docs = render(overlay)
    assert docs
    errors = []
    for obj in docs:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{_id(overlay, obj)}: {exc.message} at {'/'.join(map(str, exc.caught.path))}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{_id(overlay, obj)}: no schema ({exc.message})")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_objects_land_in_the_intended_namespaces(overlay):
    for obj in render(overlay):
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == NAMESPACE
            assert obj["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
            continue
        expected = PIPELINE_NAMESPACE if _is_pipeline_side(obj) else NAMESPACE
        assert obj["metadata"].get("namespace") == expected, _id(overlay, obj)


def _is_pipeline_side(obj: dict[str, Any]) -> bool:
    name = obj["metadata"]["name"]
    return name.startswith("melanoma-pipeline-runner") or name in {
        "mlflow-client-config",
        "pipeline-gpu-defaults",
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_select_pods_and_name_existing_ports(overlay):
    pods = [pod_template(w) for w in workloads(overlay)]
    for svc in objects(overlay, "Service"):
        selected = [p for p in pods if _labels_match(svc["spec"]["selector"], p["metadata"]["labels"])]
        assert selected, f"{_id(overlay, svc)} selects no pod"
        port_names = {
            port.get("name") for p in selected for _, c in containers(p) for port in c.get("ports", [])
        }
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in port_names, (
                f"{_id(overlay, svc)} targets unknown port {port['targetPort']}"
            )


# --------------------------------------------------------------------------- pod security and resources


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_cpu_and_memory_requests_and_limits(overlay):
    missing = []
    for obj in workloads(overlay):
        for _, c in containers(pod_template(obj)):
            res = c.get("resources", {})
            for section in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in res.get(section, {}):
                        missing.append(f"{_id(overlay, obj, c)} {section}.{resource}")
    assert not missing, "missing resources:\n" + "\n".join(missing)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_non_root_without_privileges(overlay):
    problems = []
    for obj in workloads(overlay):
        pod = pod_template(obj)
        pod_sc = pod["spec"].get("securityContext", {})
        if pod["spec"].get("automountServiceAccountToken") is not False:
            problems.append(f"{_id(overlay, obj)}: mounts a service-account token it does not need")
        for _, c in containers(pod):
            sc = c.get("securityContext", {})

            def effective(key: str, sc: dict[str, Any] = sc, pod_sc: dict[str, Any] = pod_sc) -> Any:
                return sc.get(key, pod_sc.get(key))  # the container's setting wins over the pod's

            where = _id(overlay, obj, c)
            if effective("runAsNonRoot") is not True:
                problems.append(f"{where}: runAsNonRoot is not true")
            uid = effective("runAsUser")
            if not isinstance(uid, int) or uid == 0:
                problems.append(f"{where}: runAsUser {uid!r} is not a non-zero UID")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                problems.append(f"{where}: capabilities are not all dropped")
            if sc.get("privileged"):
                problems.append(f"{where}: privileged")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: root filesystem is writable")
            if (effective("seccompProfile") or {}).get("type") != "RuntimeDefault":
                problems.append(f"{where}: no RuntimeDefault seccomp profile (PSA restricted needs one)")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_writable_paths_of_read_only_containers_are_volumes(overlay):
    """A read-only root needs an emptyDir (or PVC) on /tmp, else Python, MLflow and Streamlit fail."""
    for obj in workloads(overlay):
        for _, c in containers(pod_template(obj)):
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            if c["name"] != "wait-for-stores":  # only opens sockets
                assert "/tmp" in mounts, f"{_id(overlay, obj, c)} has no writable /tmp"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned_and_ours_are_retaggable(overlay):
    for obj in workloads(overlay):
        for _, c in containers(pod_template(obj)):
            image = c["image"]
            name, _, tag = image.rpartition(":")
            assert name and tag and tag != "latest", f"{_id(overlay, obj, c)} uses an unpinned image {image}"
            if image.startswith("melanoma-mlops/"):
                assert tag == "0.1.0", image


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_mlflow_has_health_probes(overlay):
    mlflow = pod_template(one(overlay, "Deployment", "mlflow"))
    (container,) = mlflow["spec"]["containers"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] == "/health", probe
    app = pod_template(one(overlay, "Deployment", "app"))
    assert app["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/_stcore/health"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_mlflow_environment_starts_the_intended_server(overlay, monkeypatch, capsys):
    """The Deployment's env, fed to the real start module, yields PostgreSQL + proxied S3 + auth."""
    from melanoma_mlops import tracking_server as mlflow_server

    config = one(overlay, "ConfigMap", "mlflow-config")["data"]
    (container,) = pod_template(one(overlay, "Deployment", "mlflow"))["spec"]["containers"]
    env = dict(config)
    fake_secret = {"POSTGRES_USER": "u", "POSTGRES_PASSWORD": "p"}
    for var in container["env"]:
        if "value" in var:
            value = var["value"]
            for key, secret in fake_secret.items():
                value = value.replace(f"$({key})", secret)
            env[var["name"]] = value
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert mlflow_server.main(["--print-command"]) == 0
    cmd = capsys.readouterr().out.split()
    assert cmd[cmd.index("--backend-store-uri") + 1] == "postgresql://u:p@postgres:5432/mlflow"
    assert cmd[cmd.index("--artifacts-destination") + 1] == "s3://mlflow/artifacts"
    assert cmd[cmd.index("--app-name") + 1] == "basic-auth"
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    allowed = cmd[cmd.index("--allowed-hosts") + 1].split(",")
    assert f"mlflow.{NAMESPACE}.svc.cluster.local:*" in allowed
    assert not [h for h in allowed if h.endswith("*") and not h.endswith(":*")], "a wildcard hostname"
    assert env["MLFLOW_AUTH_DATABASE_URI"].endswith("/mlflow_auth")
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"


# --------------------------------------------------------------------------- secrets


def _secret_templates() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((K8S / "secrets").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _assert_no_real_values(secret: dict[str, Any], where: str) -> None:
    for section in ("data", "stringData"):
        for key, value in (secret.get(section) or {}).items():
            assert value in ("", None, PLACEHOLDER), f"{where}: {section}.{key} carries a value"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_rendered_secret_carries_a_value(overlay):
    # Secrets are created with `kubectl create secret`, never applied from the repo; should one be
    # added to a kustomization anyway, it may hold placeholders only.
    for secret in objects(overlay, "Secret"):
        _assert_no_real_values(secret, _id(overlay, secret))


def test_secret_templates_hold_placeholders_only_and_validate():
    templates = _secret_templates()
    assert templates
    for secret in templates:
        assert secret["kind"] == "Secret"
        kubernetes_validate.validate(secret, K8S_VERSION, strict=True)
        _assert_no_real_values(secret, f"k8s/secrets {secret['metadata']['name']}")
        assert all(v == PLACEHOLDER for v in secret["stringData"].values())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_secret_reference_is_documented_by_a_template(overlay):
    documented = {
        (s["metadata"]["namespace"], s["metadata"]["name"], key)
        for s in _secret_templates()
        for key in s.get("stringData", {})
    }
    for obj in workloads(overlay):
        namespace = obj["metadata"]["namespace"]
        for _, c in containers(pod_template(obj)):
            for var in c.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert (namespace, ref["name"], ref["key"]) in documented, (
                        f"{_id(overlay, obj, c)}: {ref}"
                    )
    # The pipeline namespace gets the MLflow client credentials too (steps mount them by name).
    assert (PIPELINE_NAMESPACE, "mlflow-client-credentials", "MLFLOW_TRACKING_PASSWORD") in documented


# --------------------------------------------------------------------------- network policies


def _labels_match(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels + matchExpressions, or a plain map)."""
    if selector is None:
        return False
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}  # a Service's plain selector map
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _peer_admits(peer: dict[str, Any], policy_ns: str, src_ns: str, src_labels: dict[str, str]) -> bool:
    if "ipBlock" in peer:
        return False  # pod-to-pod traffic is judged by the selectors
    ns_labels = {"kubernetes.io/metadata.name": src_ns}
    if "namespaceSelector" in peer:
        ns_ok = _labels_match(peer["namespaceSelector"], ns_labels)
    else:
        ns_ok = src_ns == policy_ns
    pod_ok = _labels_match(peer.get("podSelector", {}), src_labels)
    return ns_ok and pod_ok


def ingress_allowed(
    overlay: str, src: tuple[str, dict[str, str]], dst: tuple[str, dict[str, str]], port: int
) -> bool:
    """Would the overlay's NetworkPolicies let pod ``src`` open ``port`` on pod ``dst``?"""
    src_ns, src_labels = src
    dst_ns, dst_labels = dst
    selecting = [
        p
        for p in objects(overlay, "NetworkPolicy")
        if p["metadata"]["namespace"] == dst_ns
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
        and _labels_match(p["spec"]["podSelector"], dst_labels)
    ]
    if not selecting:
        return True  # an unselected pod is not isolated
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            ports = rule.get("ports")
            if ports and not any(p.get("port") == port for p in ports):
                continue
            peers = rule.get("from")
            if not peers or any(_peer_admits(peer, dst_ns, src_ns, src_labels) for peer in peers):
                return True
    return False


def _pod(overlay: str, kind: str, name: str) -> tuple[str, dict[str, str]]:
    obj = one(overlay, kind, name)
    return obj["metadata"]["namespace"], pod_template(obj)["metadata"]["labels"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_exist_for_each_store(overlay):
    names = {p["metadata"]["name"] for p in objects(overlay, "NetworkPolicy")}
    assert {"default-deny-ingress", "mlflow-ingress", "postgres-ingress", "minio-ingress"} <= names
    deny = one(overlay, "NetworkPolicy", "default-deny-ingress")["spec"]
    assert deny["podSelector"] == {} and "ingress" not in deny
    for name, app in (
        ("mlflow-ingress", "mlflow"),
        ("postgres-ingress", "postgres"),
        ("minio-ingress", "minio"),
    ):
        spec = one(overlay, "NetworkPolicy", name)["spec"]
        assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": app}}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_labelled_clients_reach_mlflow_and_only_mlflow_reaches_the_stores(overlay):
    mlflow = _pod(overlay, "Deployment", "mlflow")
    app = _pod(overlay, "Deployment", "app")
    postgres = _pod(overlay, "StatefulSet", "postgres")
    minio = _pod(overlay, "StatefulSet", "minio")
    bucket_job = _pod(overlay, "Job", "minio-create-bucket")
    key, value = MLFLOW_CLIENT_LABEL
    pipeline_pod = (PIPELINE_NAMESPACE, {key: value, "pipelines.kubeflow.org/v2_component": "true"})
    unlabelled_pipeline_pod = (PIPELINE_NAMESPACE, {"pipelines.kubeflow.org/v2_component": "true"})
    stranger = ("default", {key: value})  # right label, namespace not trusted

    assert app[1].get(key) == value, "the app must carry the MLflow client label"
    assert bucket_job[1].get(MINIO_CLIENT_LABEL[0]) == MINIO_CLIENT_LABEL[1]
    allowed = {
        ("app", "mlflow"): ingress_allowed(overlay, app, mlflow, 5000),
        ("pipeline", "mlflow"): ingress_allowed(overlay, pipeline_pod, mlflow, 5000),
        ("mlflow", "postgres"): ingress_allowed(overlay, mlflow, postgres, 5432),
        ("mlflow", "minio"): ingress_allowed(overlay, mlflow, minio, 9000),
        ("bucket-job", "minio"): ingress_allowed(overlay, bucket_job, minio, 9000),
        ("anyone", "app"): ingress_allowed(overlay, stranger, app, 8501),
    }
    denied = {
        ("unlabelled pipeline", "mlflow"): ingress_allowed(overlay, unlabelled_pipeline_pod, mlflow, 5000),
        ("other namespace", "mlflow"): ingress_allowed(overlay, stranger, mlflow, 5000),
        ("app", "postgres"): ingress_allowed(overlay, app, postgres, 5432),
        ("app", "minio"): ingress_allowed(overlay, app, minio, 9000),
        ("pipeline", "postgres"): ingress_allowed(overlay, pipeline_pod, postgres, 5432),
        ("pipeline", "minio"): ingress_allowed(overlay, pipeline_pod, minio, 9000),
        ("bucket-job", "postgres"): ingress_allowed(overlay, bucket_job, postgres, 5432),
        ("app", "mlflow other port"): ingress_allowed(overlay, app, mlflow, 9999),
        ("mlflow", "minio console"): ingress_allowed(overlay, mlflow, minio, 9001),
    }
    assert all(allowed.values()), {k: v for k, v in allowed.items() if not v}
    assert not any(denied.values()), {k: v for k, v in denied.items() if v}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_stores_may_not_open_connections(overlay):
    for name in ("postgres-ingress", "minio-ingress"):
        spec = one(overlay, "NetworkPolicy", name)["spec"]
        assert "Egress" in spec["policyTypes"] and not spec.get("egress")


# --------------------------------------------------------------------------- pipeline side


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pipeline_runner_rbac_is_bound_in_the_pipeline_namespace(overlay):
    sa = one(overlay, "ServiceAccount", "melanoma-pipeline-runner")
    binding = one(overlay, "RoleBinding", "melanoma-pipeline-runner")
    role = one(overlay, "Role", "melanoma-pipeline-runner")
    assert sa["metadata"]["namespace"] == binding["metadata"]["namespace"] == role["metadata"]["namespace"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": "melanoma-pipeline-runner",
            "namespace": sa["metadata"]["namespace"],
        }
    ]
    verbs = {verb for rule in role["rules"] for verb in rule["verbs"]}
    assert "*" not in verbs and "escalate" not in verbs and "bind" not in verbs
    assert not any(rule.get("resources") == ["*"] for rule in role["rules"])
    config = one(overlay, "ConfigMap", "mlflow-client-config")
    assert config["data"]["MLFLOW_TRACKING_URI"] == f"http://mlflow.{NAMESPACE}.svc.cluster.local:5000"


def test_gpu_overlay_records_gpu_scheduling_defaults():
    data = one("gpu", "ConfigMap", "pipeline-gpu-defaults")["data"]
    assert int(data["gpus"]) >= 1
    key, _, value = data["node-selector"].partition("=")
    assert key and value
    toleration, _, effect = data["toleration"].rpartition(":")
    assert "=" in toleration and effect in {"NoSchedule", "PreferNoSchedule", "NoExecute"}
    assert not [o for o in render("local") if o["metadata"]["name"] == "pipeline-gpu-defaults"]


def test_overlays_differ_in_size_not_in_shape():
    def shape(overlay: str) -> set[tuple[str, str]]:
        return {(o["kind"], o["metadata"]["name"]) for o in render(overlay)}

    assert shape("gpu") - shape("local") == {("ConfigMap", "pipeline-gpu-defaults")}
    assert shape("local") <= shape("gpu")

    def storage(overlay: str, name: str) -> str:
        return one(overlay, "StatefulSet", name)["spec"]["volumeClaimTemplates"][0]["spec"]["resources"][
            "requests"
        ]["storage"]

    assert storage("local", "minio") == "5Gi" and storage("gpu", "minio") == "200Gi"
