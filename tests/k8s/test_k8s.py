"""The Kubernetes manifests: each overlay renders, validates strictly, and keeps the security rules.

No cluster is needed: `kubectl kustomize` renders offline and kubernetes-validate ships the schemas.
A missing kubectl skips these tests on a developer's machine and fails them in CI (CI=true).
"""

from __future__ import annotations

import configparser
import ipaddress
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
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
OWN_IMAGE_PREFIX = "melanoma-mlops/"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def require_tool(name: str, *candidates: Path, hint: str = "") -> str:
    """The path of a command-line tool the tests need.

    Missing outside CI: skip with the tool's name. Missing in CI (CI=true): fail, since CI
    installs it and a skip there would hide a broken install.
    """
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed{f' ({hint})' if hint else ''}"
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{message}; CI must provide it", pytrace=False)
    pytest.skip(message)


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    kubectl = require_tool("kubectl", hint="kubectl with its built-in kustomize renders the overlays")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
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
def test_images_are_pinned_by_digest_unless_we_build_them(overlay):
    """Third-party images by digest; our own (built by the deployer) by version, with a checkov skip."""
    for obj in workloads(overlay):
        for _, c in containers(pod_template(obj)):
            image = c["image"]
            where = _id(overlay, obj, c)
            name, _, tag = image.split("@")[0].rpartition(":")
            assert name and tag and tag != "latest", f"{where} uses an unpinned image {image}"
            if image.startswith(OWN_IMAGE_PREFIX):
                assert tag == "0.1.0", image
                assert "CKV_K8S_43" in checkov_skips(obj), f"{where}: own image without a reasoned skip"
            else:
                assert DIGEST.search(image), f"{where}: third-party image {image} is not pinned by digest"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pulled_always_except_our_own_on_a_laptop(overlay):
    for obj in workloads(overlay):
        for _, c in containers(pod_template(obj)):
            policy = c.get("imagePullPolicy")
            if overlay == "local" and c["image"].startswith(OWN_IMAGE_PREFIX):
                # kind/minikube: loaded into the node with `kind load docker-image`, not pushed.
                assert policy == "IfNotPresent", _id(overlay, obj, c)
                assert "CKV_K8S_15" in checkov_skips(obj), _id(overlay, obj, c)
            else:
                assert policy == "Always", f"{_id(overlay, obj, c)}: imagePullPolicy {policy}"


def checkov_skips(obj: dict[str, Any]) -> dict[str, str]:
    """check id -> reason, from the object's `checkov.io/skipN: CHECK=reason` annotations."""
    skips = {}
    for key, value in (obj["metadata"].get("annotations") or {}).items():
        if key.startswith("checkov.io/skip"):
            check, _, reason = value.partition("=")
            skips[check.strip()] = reason.strip()
    return skips


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_checkov_skip_gives_its_reason(overlay):
    for obj in render(overlay):
        for key, value in (obj["metadata"].get("annotations") or {}).items():
            if not key.startswith("checkov.io/skip"):
                continue
            where = f"{_id(overlay, obj)} {key}"
            # checkov splits the value on "=" and crashes on a second one.
            assert value.count("=") == 1, f"{where}: exactly one '=' (CHECK=reason) allowed"
            check, reason = value.split("=")
            assert re.fullmatch(r"CKV2?_K8S_\d+", check.strip()), f"{where}: {check!r} is not a check id"
            assert len(reason.split()) >= 12, f"{where}: a skip needs a written reason, got {reason!r}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_mlflow_has_health_probes(overlay):
    mlflow = pod_template(one(overlay, "Deployment", "mlflow"))
    (container,) = mlflow["spec"]["containers"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] == "/health", probe
    app = pod_template(one(overlay, "Deployment", "app"))
    assert app["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/_stcore/health"


# --------------------------------------------------------------------------- environment and files


def _config_map(overlay: str, namespace: str, name: str) -> dict[str, str]:
    found = [
        c
        for c in objects(overlay, "ConfigMap")
        if c["metadata"]["name"] == name and c["metadata"]["namespace"] == namespace
    ]
    assert len(found) == 1, f"ConfigMap {namespace}/{name} in {overlay}"
    return found[0].get("data", {})


def container_env(overlay: str, obj: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
    """The environment a container starts with; a Secret reference reads ``<secret NAME/KEY>``."""
    namespace = obj["metadata"]["namespace"]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(_config_map(overlay, namespace, source["configMapRef"]["name"]))
        if "secretRef" in source:
            env["<all keys of secret>"] = source["secretRef"]["name"]
    for var in container.get("env", []):
        ref = var.get("valueFrom", {})
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "configMapKeyRef" in ref:
            cm = ref["configMapKeyRef"]
            env[var["name"]] = _config_map(overlay, namespace, cm["name"])[cm["key"]]
        elif "secretKeyRef" in ref:
            env[var["name"]] = f"<secret {ref['secretKeyRef']['name']}/{ref['secretKeyRef']['key']}>"
    return env


@dataclass
class FakeKubelet:
    """Lays a pod's volumes out under a temporary folder, so its containers' paths can be run here.

    ConfigMap volumes hold the rendered ConfigMap's data, Secret volumes the fake values given for
    their items, emptyDirs start empty; ``local(container, path)`` maps a path inside a container
    to the file here through that container's volume mounts (nested mounts included).
    """

    overlay: str
    obj: dict[str, Any]
    root: Path
    secrets: dict[str, str]
    volumes: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        namespace = self.obj["metadata"]["namespace"]
        for volume in pod_template(self.obj)["spec"].get("volumes", []):
            folder = self.root / volume["name"]
            folder.mkdir(parents=True)
            self.volumes[volume["name"]] = folder
            if "configMap" in volume:
                data = _config_map(self.overlay, namespace, volume["configMap"]["name"])
                for item in volume["configMap"].get("items") or [{"key": k, "path": k} for k in data]:
                    (folder / item["path"]).write_text(data[item["key"]])
            if "secret" in volume:
                for item in volume["secret"]["items"]:
                    (folder / item["path"]).write_text(self.secrets[item["key"]])

    def local(self, container: dict[str, Any], path: str) -> Path:
        """``path`` as ``container`` sees it: its mounts are links to the volume folders."""
        root = self.root / f"fs-{container['name']}"
        if not root.exists():
            for mount in sorted(container.get("volumeMounts", []), key=lambda m: len(m["mountPath"])):
                link = root / mount["mountPath"].strip("/")
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(self.volumes[mount["name"]], target_is_directory=True)
        return root / path.lstrip("/")

    def run_init(self, name: str) -> subprocess.CompletedProcess[str]:
        """Run init container ``name`` (a python command) with this interpreter, paths mapped here."""
        (init,) = [c for c in pod_template(self.obj)["spec"]["initContainers"] if c["name"] == name]
        command = [*init.get("command", []), *init.get("args", [])]
        assert command[0] == "python", command
        args = []
        for arg in command[1:]:
            path, sep, rename = arg.partition(":")
            args.append(str(self.local(init, path)) + sep + rename if arg.startswith("/") else arg)
        return subprocess.run(
            [sys.executable, *args], capture_output=True, text=True, timeout=60, check=False
        )


FAKE_SECRETS = {
    "POSTGRES_USER": "mlflow-db",
    "POSTGRES_PASSWORD": "0f3a9c" * 6,
    "MINIO_ROOT_USER": "mlflow-admin",
    "MINIO_ROOT_PASSWORD": "7be1d2" * 6,
    "MLFLOW_TRACKING_USERNAME": "app",
    "MLFLOW_TRACKING_PASSWORD": "51c0ff" * 6,
    "MLFLOW_AUTH_ADMIN_PASSWORD": "a11ce5" * 6,
    "MLFLOW_FLASK_SERVER_SECRET_KEY": "f1a5c0" * 8,
    "OAUTH2_PROXY_CLIENT_SECRET": "c1e7" * 8,
    "OAUTH2_PROXY_COOKIE_SECRET": "c00c1e" * 5 + "ab",
}
PASSWORDS = [v for k, v in FAKE_SECRETS.items() if "USER" not in k]


def _main(obj: dict[str, Any]) -> dict[str, Any]:
    (main,) = pod_template(obj)["spec"]["containers"]
    return main


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_mlflow_server_starts_with_credentials_from_files_only(overlay, tmp_path, monkeypatch, capsys):
    """The init container renders libpq's and boto3's files; the server command holds no password."""
    import boto3

    from melanoma_mlops import tracking_server as mlflow_server

    deployment = one(overlay, "Deployment", "mlflow")
    kubelet = FakeKubelet(overlay, deployment, tmp_path, FAKE_SECRETS)
    done = kubelet.run_init("render-credentials")
    assert done.returncode == 0, done.stderr
    main = _main(deployment)
    env = container_env(overlay, deployment, main)

    service = configparser.ConfigParser(interpolation=None)
    service.read(kubelet.local(main, env["PGSERVICEFILE"]))
    for uri_var in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_AUTH_DATABASE_URI"):
        uri = env[uri_var]
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; the server image has psycopg2.
        assert uri.startswith("postgresql+psycopg2://postgres:5432/"), uri
        assert "@" not in uri, f"{uri_var} carries credentials"
        name = re.search(r"[?&]service=([\w-]+)", uri).group(1)
        assert dict(service[name]) == {
            "user": FAKE_SECRETS["POSTGRES_USER"],
            "password": FAKE_SECRETS["POSTGRES_PASSWORD"],
        }
    assert env["MLFLOW_AUTH_DATABASE_URI"].split("?")[0].endswith("/mlflow_auth")
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"

    # boto3 (the artifact proxy's S3 client) finds the MinIO keys in the rendered file.
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(
        "AWS_SHARED_CREDENTIALS_FILE", str(kubelet.local(main, env["AWS_SHARED_CREDENTIALS_FILE"]))
    )
    creds = boto3.Session().get_credentials()
    assert (creds.access_key, creds.secret_key) == (
        FAKE_SECRETS["MINIO_ROOT_USER"],
        FAKE_SECRETS["MINIO_ROOT_PASSWORD"],
    )

    # The real start module, fed the container's environment: PostgreSQL + proxied S3 + auth.
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert mlflow_server.main(["--print-command"]) == 0
    printed = capsys.readouterr().out
    cmd = printed.split()
    assert cmd[cmd.index("--backend-store-uri") + 1] == env["MLFLOW_BACKEND_STORE_URI"]
    assert cmd[cmd.index("--artifacts-destination") + 1] == "s3://mlflow/artifacts"
    assert cmd[cmd.index("--app-name") + 1] == "basic-auth"
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    allowed = cmd[cmd.index("--allowed-hosts") + 1].split(",")
    assert f"mlflow.{NAMESPACE}.svc.cluster.local:*" in allowed
    assert not [h for h in allowed if h.endswith("*") and not h.endswith(":*")], "a wildcard hostname"
    assert not [p for p in PASSWORDS if p in printed], "a password in the server command line"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_app_and_bucket_job_read_their_credentials_from_rendered_files(overlay, tmp_path, monkeypatch):
    import boto3
    from mlflow.utils.credentials import read_mlflow_creds

    app = one(overlay, "Deployment", "app")
    kubelet = FakeKubelet(overlay, app, tmp_path / "app", FAKE_SECRETS)
    done = kubelet.run_init("render-credentials")
    assert done.returncode == 0, done.stderr
    env = container_env(overlay, app, _main(app))
    assert "MLFLOW_TRACKING_PASSWORD" not in env and "MLFLOW_TRACKING_USERNAME" not in env
    # MLflow's client reads $HOME/.mlflow/credentials when the variables are unset.
    rendered = kubelet.local(_main(app), f"{env['HOME']}/.mlflow/credentials")
    home = tmp_path / "home"
    (home / ".mlflow").mkdir(parents=True)
    (home / ".mlflow" / "credentials").write_text(rendered.read_text())
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    creds = read_mlflow_creds()
    assert (creds.username, creds.password) == (
        FAKE_SECRETS["MLFLOW_TRACKING_USERNAME"],
        FAKE_SECRETS["MLFLOW_TRACKING_PASSWORD"],
    )

    job = one(overlay, "Job", "minio-create-bucket")
    kubelet = FakeKubelet(overlay, job, tmp_path / "job", FAKE_SECRETS)
    done = kubelet.run_init("render-credentials")
    assert done.returncode == 0, done.stderr
    env = container_env(overlay, job, _main(job))
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(
        "AWS_SHARED_CREDENTIALS_FILE", str(kubelet.local(_main(job), env["AWS_SHARED_CREDENTIALS_FILE"]))
    )
    creds = boto3.Session().get_credentials()
    assert (creds.access_key, creds.secret_key) == (
        FAKE_SECRETS["MINIO_ROOT_USER"],
        FAKE_SECRETS["MINIO_ROOT_PASSWORD"],
    )


def test_credential_renderer_writes_private_files_and_refuses_bad_values(tmp_path):
    app = one("local", "Deployment", "app")
    kubelet = FakeKubelet("local", app, tmp_path / "ok", FAKE_SECRETS)
    assert kubelet.run_init("render-credentials").returncode == 0
    (written,) = kubelet.volumes["credentials"].iterdir()
    assert written.name == "credentials" and written.stat().st_mode & 0o777 == 0o600

    missing = {k: v for k, v in FAKE_SECRETS.items() if k != "MLFLOW_TRACKING_PASSWORD"}
    kubelet = FakeKubelet("local", app, tmp_path / "missing", {**missing, "MLFLOW_TRACKING_PASSWORD": ""})
    (kubelet.volumes["mlflow-client-credentials"] / "MLFLOW_TRACKING_PASSWORD").unlink()
    done = kubelet.run_init("render-credentials")
    assert done.returncode != 0 and "MLFLOW_TRACKING_PASSWORD" in done.stderr
    assert not list(kubelet.volumes["credentials"].iterdir())

    # A newline would add lines to the INI file, '%' breaks MLflow's configparser.
    for bad in ("pass\nword = x", "50%off"):
        kubelet = FakeKubelet(
            "local", app, tmp_path / str(len(bad)), {**FAKE_SECRETS, "MLFLOW_TRACKING_PASSWORD": bad}
        )
        done = kubelet.run_init("render-credentials")
        assert done.returncode != 0 and "MLFLOW_TRACKING_PASSWORD" in done.stderr
        assert bad not in done.stderr + done.stdout, "the renderer printed a secret value"


# Secret values that remain environment variables, and why (also in the checkov.io skip).
SECRET_ENV_EXCEPTIONS = {
    # MLflow reads both from its environment only (the admin password also from the basic-auth
    # ini, which melanoma_mlops.tracking_server renders without a file option).
    ("Deployment/mlflow", "mlflow"): {"MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"},
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_reach_containers_as_files(overlay):
    for obj in workloads(overlay):
        pod = pod_template(obj)
        volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
        for _, c in containers(pod):
            where = _id(overlay, obj, c)
            assert not [s for s in c.get("envFrom", []) if "secretRef" in s], f"{where}: envFrom a Secret"
            from_secrets = {v["name"] for v in c.get("env", []) if "secretKeyRef" in v.get("valueFrom", {})}
            allowed = SECRET_ENV_EXCEPTIONS.get(
                (f"{obj['kind']}/{obj['metadata']['name']}", c["name"]), set()
            )
            assert from_secrets <= allowed, (
                f"{where}: Secrets as environment variables {from_secrets - allowed}"
            )
            if from_secrets:
                reason = checkov_skips(obj).get("CKV_K8S_35", "")
                assert all(name in reason for name in from_secrets), f"{where}: skip reason must name them"
            # *_FILE variables and --*-file flags name a file of a mounted Secret volume (or one
            # the render-credentials init container wrote from Secret files).
            paths = [v["value"] for v in c.get("env", []) if v["name"].endswith("_FILE") and "value" in v]
            paths += [a.split("=", 1)[1] for a in c.get("args", []) if re.match(r"--[\w-]+-file=", a)]
            for path in paths:
                mount = next(
                    (
                        m
                        for m in c.get("volumeMounts", [])
                        if path.startswith(m["mountPath"].rstrip("/") + "/")
                    ),
                    None,
                )
                assert mount, f"{where}: {path} is on no volume"
                volume = volumes[mount["name"]]
                if volume["name"] == "credentials":
                    continue
                assert "secret" in volume, f"{where}: {path} is not a Secret file"
                item = path[len(mount["mountPath"].rstrip("/")) + 1 :]
                assert item in {i["path"] for i in volume["secret"]["items"]}, f"{where}: {path}"
        for volume in volumes.values():
            if "secret" in volume:
                # Items make a missing key stop the pod; 0440 + fsGroup: only the pod's group reads.
                assert volume["secret"].get("items"), f"{_id(overlay, obj)}: Secret volume without items"
                assert volume["secret"].get("defaultMode", 0o644) & 0o007 == 0, _id(overlay, obj)
                assert "fsGroup" in pod["spec"]["securityContext"], _id(overlay, obj)
            if volume["name"] == "credentials":
                assert volume["emptyDir"].get("medium") == "Memory", f"{_id(overlay, obj)}: rendered on disk"
        # Whatever the init container writes, the main containers only read.
        for _, c in containers(pod):
            for m in c.get("volumeMounts", []):
                if m["name"] == "credentials" and c["name"] != "render-credentials":
                    assert m.get("readOnly") is True, _id(overlay, obj, c)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_telemetry_is_off_in_every_container(overlay):
    """MLflow 3 (and tools honouring DO_NOT_TRACK) phone home by default; a clinical service must not."""
    for obj in workloads(overlay):
        for _, c in containers(pod_template(obj)):
            env = container_env(overlay, obj, c)
            where = _id(overlay, obj, c)
            assert env.get("MLFLOW_DISABLE_TELEMETRY") == "true", where
            assert env.get("DO_NOT_TRACK") == "true", where
            if c["name"] == "app":
                assert env.get("STREAMLIT_BROWSER_GATHER_USAGE_STATS") == "false", where
    # Pipeline steps load this ConfigMap; they need the same two settings.
    client = one(overlay, "ConfigMap", "mlflow-client-config")["data"]
    assert client["MLFLOW_DISABLE_TELEMETRY"] == "true" and client["DO_NOT_TRACK"] == "true"


# What the app's analyse path costs, measured with the project's ResNet50 classifier at 224 px
# (model built, one predict + Grad-CAM; then predict + Grad-CAM + display of one PNG): ~1.15 GiB
# resident before any upload, +0.50 GiB for a 24 MP image, +1.08 GiB for 50 MP.
APP_RESIDENT_BYTES = int(1.3 * 2**30)  # the model plus Streamlit's server, with some margin
APP_BYTES_PER_PIXEL = 22
APP_CONCURRENT_ANALYSES = 2


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    for unit, factor in units.items():
        if quantity.endswith(unit):
            return int(float(quantity[: -len(unit)]) * factor)
    return int(quantity)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_app_limits_are_enforced_by_the_server_and_fit_the_pod(overlay):
    from melanoma_mlops.app import logic as app_logic
    from melanoma_mlops.serving import memory_budget

    app = one(overlay, "Deployment", "app")
    main = _main(app)
    env = container_env(overlay, app, main)
    upload_mb = float(env[app_logic.MAX_UPLOAD_MB_ENV])
    # Streamlit refuses larger request bodies itself (server.maxUploadSize, whole MB), so the
    # app's own check is not the only one and the file is never read into memory.
    # Twice the app's own limit: a file a little over it still reaches the app and gets its message;
    # anything far bigger is refused by Streamlit while it streams.
    server_mb = int(env["STREAMLIT_SERVER_MAX_UPLOAD_SIZE"])
    assert math.ceil(upload_mb) < server_mb <= 2 * math.ceil(upload_mb)
    assert upload_mb <= app_logic.DEFAULT_MAX_UPLOAD_MB
    max_pixels = int(env[app_logic.MAX_PIXELS_ENV])
    assert 12_000_000 <= max_pixels <= memory_budget.MAX_IMAGE_PIXELS, "a dermatoscope image must still fit"
    limit = _bytes(main["resources"]["limits"]["memory"])
    needed = APP_RESIDENT_BYTES + APP_CONCURRENT_ANALYSES * APP_BYTES_PER_PIXEL * max_pixels
    assert limit >= needed, f"{overlay}: {limit / 2**30:.2f} GiB < {needed / 2**30:.2f} GiB the app needs"
    assert _bytes(main["resources"]["requests"]["memory"]) >= APP_RESIDENT_BYTES, "request below the model"
    # Headless, on the pod's interfaces (the auth proxy connects to the pod IP).
    assert env["STREAMLIT_SERVER_ADDRESS"] == "0.0.0.0" and env["STREAMLIT_SERVER_HEADLESS"] == "true"
    assert env["STREAMLIT_SERVER_PORT"] == str(main["ports"][0]["containerPort"])
    # The ingress lets an upload of the app's limit through, and not much more.
    ingress = one(overlay, "Ingress", "app")
    body_size = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert body_size.endswith("m"), body_size  # nginx: m = MiB
    assert server_mb < int(body_size[:-1]) <= server_mb + 2


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
        pod = pod_template(obj)
        for _, c in containers(pod):
            for var in c.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert (namespace, ref["name"], ref["key"]) in documented, (
                        f"{_id(overlay, obj, c)}: {ref}"
                    )
        for volume in pod["spec"].get("volumes", []):
            if "secret" in volume:
                for item in volume["secret"]["items"]:
                    ref = (namespace, volume["secret"]["secretName"], item["key"])
                    assert ref in documented, f"{_id(overlay, obj)}: volume {volume['name']} {ref}"
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


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace + labels) or an address outside the cluster (ip)."""

    namespace: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    ip: str | None = None

    @classmethod
    def pod(cls, namespace: str, labels: dict[str, str]) -> Endpoint:
        return cls(namespace, tuple(sorted(labels.items())))

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


def _peer_matches(peer: dict[str, Any], policy_ns: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        # Pod-to-pod traffic is judged by the selectors (whether an ipBlock also matches pod IPs
        # is up to the CNI); addresses outside the cluster only by ipBlocks.
        if other.ip is None:
            return False
        block, address = peer["ipBlock"], ipaddress.ip_address(other.ip)
        network = ipaddress.ip_network(block["cidr"])
        excluded = [ipaddress.ip_network(e) for e in block.get("except", [])]
        return (
            address.version == network.version
            and address in network
            and not any(address.version == e.version and address in e for e in excluded)
        )
    if other.namespace is None:
        return False
    if "namespaceSelector" in peer:
        ns_ok = _labels_match(peer["namespaceSelector"], {"kubernetes.io/metadata.name": other.namespace})
    else:
        ns_ok = other.namespace == policy_ns
    return ns_ok and _labels_match(peer.get("podSelector", {}), other.label_map)


def _policy_types(spec: dict[str, Any]) -> list[str]:
    return spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))


def _side_allows(
    overlay: str, direction: str, subject: Endpoint, other: Endpoint, port: int, protocol: str
) -> bool:
    """Do the policies selecting ``subject`` allow its ``direction`` traffic with ``other``?"""
    if subject.namespace is None:
        return True  # outside the cluster: no NetworkPolicy applies
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [
        p["spec"]
        for p in objects(overlay, "NetworkPolicy")
        if p["metadata"]["namespace"] == subject.namespace
        and direction in _policy_types(p["spec"])
        and _labels_match(p["spec"]["podSelector"], subject.label_map)
    ]
    if not selecting:
        return True  # a pod no policy selects is not isolated in that direction
    for spec in selecting:
        for rule in spec.get(rules_key) or []:
            ports = rule.get("ports")
            if ports and not any(
                p.get("port") == port and p.get("protocol", "TCP") == protocol for p in ports
            ):
                continue
            peers = rule.get(peers_key)
            if not peers or any(_peer_matches(peer, subject.namespace, other) for peer in peers):
                return True
    return False


def allowed(overlay: str, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
    """Would the overlay's NetworkPolicies let ``src`` open ``port`` on ``dst`` (both sides' rules)?"""
    return _side_allows(overlay, "Egress", src, dst, port, protocol) and _side_allows(
        overlay, "Ingress", dst, src, port, protocol
    )


def _pod(overlay: str, kind: str, name: str) -> Endpoint:
    obj = one(overlay, kind, name)
    return Endpoint.pod(obj["metadata"]["namespace"], pod_template(obj)["metadata"]["labels"])


KUBE_DNS = Endpoint.pod("kube-system", {"k8s-app": "kube-dns"})
INGRESS_CONTROLLER = Endpoint.pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
IDENTITY_PROVIDER = Endpoint(ip="203.0.113.10")  # an address outside the cluster (TEST-NET-3)
INTERNET_V6 = Endpoint(ip="2001:db8::1")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_deny_by_default_in_both_directions(overlay):
    names = {p["metadata"]["name"] for p in objects(overlay, "NetworkPolicy")}
    assert {
        "default-deny-ingress",
        "default-deny-egress",
        "dns-egress",
        "mlflow-ingress",
        "mlflow-egress",
        "postgres-ingress",
        "minio-ingress",
        "app-ingress",
        "app-egress",
        "auth-proxy-ingress",
        "auth-proxy-egress",
        "minio-client-egress",
    } <= names
    deny = one(overlay, "NetworkPolicy", "default-deny-ingress")["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    deny = one(overlay, "NetworkPolicy", "default-deny-egress")["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Egress"] and "egress" not in deny
    for name, app in (
        ("mlflow-ingress", "mlflow"),
        ("postgres-ingress", "postgres"),
        ("minio-ingress", "minio"),
    ):
        spec = one(overlay, "NetworkPolicy", name)["spec"]
        assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": app}}
    # Every pod of the namespace is selected by a default-deny in both directions.
    for obj in workloads(overlay):
        if obj["metadata"]["namespace"] == NAMESPACE:
            pod = Endpoint.pod(NAMESPACE, pod_template(obj)["metadata"]["labels"])
            assert not allowed(overlay, pod, IDENTITY_PROVIDER, 80), _id(overlay, obj)
            assert not allowed(overlay, Endpoint.pod("default", {}), pod, 8080), _id(overlay, obj)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_workload_reaches_what_it_needs_and_nothing_else(overlay):
    mlflow = _pod(overlay, "Deployment", "mlflow")
    app = _pod(overlay, "Deployment", "app")
    proxy = _pod(overlay, "Deployment", "auth-proxy")
    postgres = _pod(overlay, "StatefulSet", "postgres")
    minio = _pod(overlay, "StatefulSet", "minio")
    bucket_job = _pod(overlay, "Job", "minio-create-bucket")
    key, value = MLFLOW_CLIENT_LABEL
    pipeline_pod = Endpoint.pod(
        PIPELINE_NAMESPACE, {key: value, "pipelines.kubeflow.org/v2_component": "true"}
    )
    unlabelled_pipeline_pod = Endpoint.pod(
        PIPELINE_NAMESPACE, {"pipelines.kubeflow.org/v2_component": "true"}
    )
    stranger = Endpoint.pod("default", {key: value})  # right label, namespace not trusted
    impostor = Endpoint.pod("default", {"app.kubernetes.io/name": "ingress-nginx"})  # wrong namespace

    assert app.label_map.get(key) == value, "the app must carry the MLflow client label"
    assert bucket_job.label_map.get(MINIO_CLIENT_LABEL[0]) == MINIO_CLIENT_LABEL[1]
    must = {
        ("ingress controller", "auth proxy"): allowed(overlay, INGRESS_CONTROLLER, proxy, 4180),
        ("auth proxy", "app"): allowed(overlay, proxy, app, 8501),
        ("auth proxy", "identity provider"): allowed(overlay, proxy, IDENTITY_PROVIDER, 443),
        ("auth proxy", "identity provider v6"): allowed(overlay, proxy, INTERNET_V6, 443),
        ("app", "mlflow"): allowed(overlay, app, mlflow, 5000),
        ("pipeline", "mlflow"): allowed(overlay, pipeline_pod, mlflow, 5000),
        ("mlflow", "postgres"): allowed(overlay, mlflow, postgres, 5432),
        ("mlflow", "minio"): allowed(overlay, mlflow, minio, 9000),
        ("bucket-job", "minio"): allowed(overlay, bucket_job, minio, 9000),
    }
    for name, pod in (("mlflow", mlflow), ("app", app), ("auth proxy", proxy), ("bucket-job", bucket_job)):
        must[(name, "dns udp")] = allowed(overlay, pod, KUBE_DNS, 53, "UDP")
        must[(name, "dns tcp")] = allowed(overlay, pod, KUBE_DNS, 53, "TCP")
    must_not = {
        # The app has no login: nothing but the auth proxy reaches it.
        ("anyone", "app"): allowed(overlay, stranger, app, 8501),
        ("ingress controller", "app directly"): allowed(overlay, INGRESS_CONTROLLER, app, 8501),
        ("pipeline", "app"): allowed(overlay, pipeline_pod, app, 8501),
        ("other namespace", "auth proxy"): allowed(overlay, stranger, proxy, 4180),
        ("ingress label, other namespace", "auth proxy"): allowed(overlay, impostor, proxy, 4180),
        ("unlabelled pipeline", "mlflow"): allowed(overlay, unlabelled_pipeline_pod, mlflow, 5000),
        ("other namespace", "mlflow"): allowed(overlay, stranger, mlflow, 5000),
        ("app", "postgres"): allowed(overlay, app, postgres, 5432),
        ("app", "minio"): allowed(overlay, app, minio, 9000),
        ("app", "internet"): allowed(overlay, app, IDENTITY_PROVIDER, 443),
        ("app", "mlflow other port"): allowed(overlay, app, mlflow, 9999),
        ("pipeline", "postgres"): allowed(overlay, pipeline_pod, postgres, 5432),
        ("pipeline", "minio"): allowed(overlay, pipeline_pod, minio, 9000),
        ("bucket-job", "postgres"): allowed(overlay, bucket_job, postgres, 5432),
        ("bucket-job", "mlflow"): allowed(overlay, bucket_job, mlflow, 5000),
        ("bucket-job", "internet"): allowed(overlay, bucket_job, IDENTITY_PROVIDER, 443),
        ("mlflow", "minio console"): allowed(overlay, mlflow, minio, 9001),
        ("mlflow", "internet"): allowed(overlay, mlflow, IDENTITY_PROVIDER, 443),
        ("mlflow", "app"): allowed(overlay, mlflow, app, 8501),
        ("auth proxy", "mlflow"): allowed(overlay, proxy, mlflow, 5000),
        ("auth proxy", "postgres"): allowed(overlay, proxy, postgres, 5432),
        ("auth proxy", "internet plain http"): allowed(overlay, proxy, IDENTITY_PROVIDER, 80),
    }
    assert all(must.values()), {k: v for k, v in must.items() if not v}
    assert not any(must_not.values()), {k: v for k, v in must_not.items() if v}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_stores_may_not_open_connections(overlay):
    for name in ("postgres-ingress", "minio-ingress"):
        spec = one(overlay, "NetworkPolicy", name)["spec"]
        assert "Egress" in spec["policyTypes"] and not spec.get("egress")
    for store in (_pod(overlay, "StatefulSet", "postgres"), _pod(overlay, "StatefulSet", "minio")):
        for dst, port, protocol in ((KUBE_DNS, 53, "UDP"), (IDENTITY_PROVIDER, 443, "TCP")):
            assert not allowed(overlay, store, dst, port, protocol), (store, dst)
        assert not allowed(overlay, store, _pod(overlay, "Deployment", "mlflow"), 5000)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_auth_proxy_is_exposed_and_over_tls(overlay):
    ingresses = objects(overlay, "Ingress")
    assert [i["metadata"]["name"] for i in ingresses] == ["app"]
    (ingress,) = ingresses
    spec = ingress["spec"]
    assert spec.get("ingressClassName"), "name the ingress controller that serves it"
    hosts = {rule["host"] for rule in spec["rules"]}
    assert hosts and hosts <= {h for tls in spec["tls"] for h in tls["hosts"]}, "every host over TLS"
    backends = [path["backend"]["service"] for rule in spec["rules"] for path in rule["http"]["paths"]]
    assert backends and all(b["name"] == "auth-proxy" for b in backends), backends
    proxy = one(overlay, "Deployment", "auth-proxy")
    env = container_env(overlay, proxy, _main(proxy))
    assert env["OAUTH2_PROXY_UPSTREAMS"] == f"http://app.{NAMESPACE}.svc.cluster.local:8501/"
    assert env["OAUTH2_PROXY_COOKIE_SECURE"] == "true" and env["OAUTH2_PROXY_PROXY_WEBSOCKETS"] == "true"
    assert env["OAUTH2_PROXY_EMAIL_DOMAINS"] not in ("", "*"), "say who may sign in"
    assert env["OAUTH2_PROXY_REDIRECT_URL"].startswith("https://") and any(
        env["OAUTH2_PROXY_REDIRECT_URL"].startswith(f"https://{h}/") for h in hosts
    )
    # Nothing else is published: every Service stays inside the cluster.
    for svc in objects(overlay, "Service"):
        assert svc["spec"].get("type", "ClusterIP") == "ClusterIP", _id(overlay, svc)


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
    assert not any("*" in rule.get("resources", []) for rule in role["rules"])
    config = one(overlay, "ConfigMap", "mlflow-client-config")
    assert config["data"]["MLFLOW_TRACKING_URI"] == f"http://mlflow.{NAMESPACE}.svc.cluster.local:5000"


# The only Secret pipeline pods read through the Kubernetes API: KFP's launcher fetches its object
# store's keys from it. Step credentials (mlflow-client-credentials, pipeline-data-credentials)
# are injected by the kubelet from the pod spec, which needs no RBAC for the pod's account.
PIPELINE_API_SECRETS = ["mlpipeline-minio-artifact"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pipeline_runner_reads_only_the_secrets_it_names(overlay):
    role = one(overlay, "Role", "melanoma-pipeline-runner")
    secret_rules = [r for r in role["rules"] if "secrets" in r.get("resources", [])]
    assert secret_rules, "KFP's launcher needs its artifact-store Secret"
    for rule in secret_rules:
        assert rule["resources"] == ["secrets"], "name Secrets in a rule of their own"
        assert rule.get("apiGroups") == [""]
        # resourceNames cannot restrict list/watch/create: get is the only safe verb here.
        assert rule["verbs"] == ["get"], rule["verbs"]
        assert sorted(rule.get("resourceNames", [])) == sorted(PIPELINE_API_SECRETS), rule
    # Nothing else grants Secrets indirectly (no wildcard resources or API groups).
    for rule in role["rules"]:
        assert "*" not in rule.get("apiGroups", []) and "*" not in rule.get("resources", []), rule
    for binding in objects(overlay, "RoleBinding") + objects(overlay, "ClusterRoleBinding"):
        assert binding["roleRef"]["kind"] == "Role", "no ClusterRole for the pipeline runner"


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
