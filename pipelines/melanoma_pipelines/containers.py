"""Every step in its container on this machine: ``kfp.local.DockerRunner`` with the project image.

The closest execution of the cluster's containerized components that a machine without Kubernetes
allows: the same DAG, the same lightweight components, each task a container of the pipeline image
(host network, the image's non-root user), tracking to an MLflow server that itself runs in the
MLflow image on 127.0.0.1 and proxies the artifacts (to a folder, or to S3/MinIO). Data reaches the
steps as on a cluster: an ``s3://`` URI (credentials and endpoint passed through from this
environment), or a local folder mounted read-only at the same path.

Permissions, without ``chmod 777`` and without running anything as root in a container:

- as root here (CI): the folders the containers write (the pipeline root, the MLflow store) are
  created by us for the image's user 10001, and the containers run as that user;
- as anyone else: the containers run as your UID/GID (the images work with any UID), so what they
  write belongs to you.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from melanoma_mlops import storage
from melanoma_mlops.artifacts import IMAGE_ENV, IMAGE_ID_ENV
from melanoma_mlops.errors import ConfigError

logger = logging.getLogger(__name__)

CPU_IMAGE = "melanoma-mlops/pipeline:0.1.0-cpu"
MLFLOW_IMAGE = "melanoma-mlops/mlflow-server:0.1.0"
IMAGE_UID = IMAGE_GID = 10001
MLFLOW_CONTAINER = "melanoma-mlops-mlflow"  # + "-<port>": one server container per port
DEFAULT_MLFLOW_PORT = 5050
MLFLOW_STORE = Path("mlruns-docker")
#: The one folder an arbitrary UID may write in the images: the container's own /tmp, private to
#: each container (not the host's shared /tmp, which is what bandit's B108 warns about).
CONTAINER_TMP = "/tmp"  # nosec B108 - a container's private /tmp, never the host's
#: Environment the containers take from this process (data access, MLflow credentials, retries).
PASS_THROUGH = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "MLFLOW_S3_ENDPOINT_URL",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MELANOMA_MLFLOW_OUTAGE_WINDOW",
    "MELANOMA_LOG_LEVEL",
)
NOT_RUNNING = (
    "no Docker engine answers: start one with `sudo docker/dockerd.sh` and build the images with "
    "`make images` (docs/containers.md)"
)


def client() -> Any:
    """A docker-py client, or one clear error saying how to start the engine."""
    import docker
    from docker.errors import DockerException

    try:
        c = docker.from_env()
        c.ping()
    except DockerException as exc:
        raise ConfigError(f"{NOT_RUNNING} ({exc})") from exc
    return c


def image_id(docker_client: Any, tag: str) -> str:
    from docker.errors import ImageNotFound

    try:
        return str(docker_client.images.get(tag).id)
    except ImageNotFound as exc:
        raise ConfigError(f"image {tag!r} is not on this machine: build it with `make images`") from exc


def container_user() -> str:
    """Who the containers run as: the image's user when we are root, else this user."""
    return f"{IMAGE_UID}:{IMAGE_GID}" if os.getuid() == 0 else f"{os.getuid()}:{os.getgid()}"


def writable_by_containers(folder: Path) -> Path:
    """Create ``folder`` (ours: a pipeline root or a store) so the containers' user may write it."""
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if os.getuid() == 0:
        for path in [folder, *folder.rglob("*")]:
            os.chown(path, IMAGE_UID, IMAGE_GID)
    elif not os.access(folder, os.W_OK):
        raise ConfigError(f"{folder} is not writable by you: pass another --pipeline-root")
    return folder


def passthrough_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: os.environ[k] for k in PASS_THROUGH if os.environ.get(k)}
    env |= {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    if os.getuid() != 0:  # an arbitrary UID has no home in the image
        env |= {
            "HOME": CONTAINER_TMP,
            "MPLCONFIGDIR": f"{CONTAINER_TMP}/matplotlib",
            "KERAS_HOME": f"{CONTAINER_TMP}/keras",
        }
    return env | dict(extra or {})


@dataclass
class StepContainers:
    """How each task's container is run: image, user, mounts and environment."""

    image: str
    image_id: str
    tracking_uri: str
    data_mounts: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def runner(self) -> Any:
        from docker.types import Mount
        from kfp import local

        mounts = [Mount(target=p, source=p, type="bind", read_only=True) for p in self.data_mounts]
        return local.DockerRunner(network_mode="host", user=container_user(), mounts=mounts)

    def task_env(self) -> dict[str, str]:
        """Set on every task (per-task environment replaces the runner's in kfp.local)."""
        return {
            **self.env,
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            IMAGE_ENV: self.image,
            IMAGE_ID_ENV: self.image_id,
        }

    def customize(self, tasks: Mapping[str, Any]) -> None:
        env = self.task_env()
        for task in tasks.values():
            for key, value in env.items():
                task.set_env_variable(key, value)


def plan(image: str, tracking_uri: str, data: str, error_file: str, weights: str = "") -> StepContainers:
    """The containers of one run: ``data`` and a ``weights`` file are mounted when they are local paths."""
    docker_client = client()
    mounts = [] if storage.is_s3(data) else [storage.normalize(data)]
    if weights and weights.lower() not in ("none", "imagenet") and not storage.is_s3(weights):
        mounts.append(storage.normalize(weights))
    from .runtime import ERROR_FILE_ENV

    return StepContainers(
        image=image,
        image_id=image_id(docker_client, image),
        tracking_uri=tracking_uri,
        data_mounts=mounts,
        env=passthrough_env({ERROR_FILE_ENV: error_file}),
    )


# --------------------------------------------------------------------------- the MLflow server


def _healthy(port: int, timeout: float = 2.0) -> bool:
    """Does an MLflow server answer /health on 127.0.0.1:``port``? (plain HTTP to loopback only:
    no URL is opened, so no other scheme or host can slip in)"""
    connection = http.client.HTTPConnection("127.0.0.1", int(port), timeout=timeout)
    try:
        connection.request("GET", "/health")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def mlflow_container_name(port: int) -> str:
    return f"{MLFLOW_CONTAINER}-{port}"


def ensure_mlflow_server(
    store: Path = MLFLOW_STORE,
    port: int = DEFAULT_MLFLOW_PORT,
    artifacts_destination: str = "",
    image: str = MLFLOW_IMAGE,
    timeout_s: float = 120.0,
) -> str:
    """The URL of the MLflow server container on 127.0.0.1:``port``, started if it is not running.

    Its backend is ``store/mlflow.db`` (a bind-mounted folder); artifacts are proxied to
    ``artifacts_destination`` (default ``store/artifacts``; ``s3://...`` with the AWS/MinIO settings
    of this environment). The container is left running so the runs can be browsed at the URL;
    ``docker rm -f melanoma-mlops-mlflow-<port>`` stops it.
    """
    from docker.errors import NotFound
    from docker.types import Mount

    url = f"http://127.0.0.1:{port}"
    name = mlflow_container_name(port)
    docker_client = client()
    with contextlib.suppress(NotFound):
        existing = docker_client.containers.get(name)
        if existing.status == "running" and _healthy(port):
            logger.info("reusing the MLflow server container %s at %s", name, url)
            return url
        existing.remove(force=True)
    if _healthy(port):
        raise ConfigError(
            f"something else answers on {url}: pass --mlflow-port, or set MLFLOW_TRACKING_URI={url} to use it"
        )
    folder = writable_by_containers(store)
    destination = artifacts_destination or str(folder / "artifacts")
    env = passthrough_env(
        {
            "MLFLOW_HOST": "127.0.0.1",
            "MLFLOW_PORT": str(port),
            "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{folder / 'mlflow.db'}",
            "MLFLOW_ARTIFACTS_DESTINATION": destination,
        }
    )
    logger.info("starting the MLflow server container %s (%s) at %s", name, image, url)
    image_id(docker_client, image)
    docker_client.containers.run(
        image,
        name=name,
        detach=True,
        network_mode="host",
        user=container_user(),
        environment=env,
        mounts=[Mount(target=str(folder), source=str(folder), type="bind")],
    )
    deadline = time.monotonic() + timeout_s
    while not _healthy(port):
        container = docker_client.containers.get(name)
        if container.status == "exited" or time.monotonic() > deadline:
            logs = container.logs(tail=40).decode(errors="replace")
            raise ConfigError(f"the MLflow server container did not start at {url}:\n{logs}")
        time.sleep(1.0)
    return url
