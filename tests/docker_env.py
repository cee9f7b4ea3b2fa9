"""Docker for the container tests: the engine, the project's images, containers that always stop.

- :func:`require_tool` / :func:`require_docker`: a test that needs docker (or kubectl, checkov, ...)
  is *skipped* outside CI with a reason naming the missing tool, and *fails* under CI (``CI=true``,
  exported by ``.ci/run``, which installs every tool), so CI can never go green by skipping.
- :func:`ensure_images`: the project's images, built once per session by ``docker/build-images.sh``
  (the script behind ``make images``: local Debian base where no registry is reachable, layer
  caches reused, so it takes seconds when nothing changed).
- :func:`run_container`: ``docker run -d --network host`` (these machines allow loopback traffic
  only, and the engine has no bridge), wait until a URL answers, always remove the container, and
  print its log when anything inside the ``with`` fails.
- :func:`writable_mount`: a host folder the container's user can write, without ``chmod 777`` and
  without running anything as root.

tests/ has no ``__init__.py``, so pytest puts tests/ on ``sys.path``: ``import docker_env``.
Standard library only at import time.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from servers import ServerStartError, free_port, wait_http

REPO = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO / "docker" / "build-images.sh"
# The non-root user every project image runs as (USER in each Dockerfile).
IMAGE_UID = 10001
IMAGE_GID = 10001
# A cold build of the three images takes ~2 minutes on a fast package mirror and can take far longer
# behind a slow one; a warm build takes seconds.
BUILD_TIMEOUT_S = 3600
CONTAINER_LOG_CHARS = 6000

__all__ = [
    "IMAGE_GID",
    "IMAGE_UID",
    "Container",
    "Images",
    "docker",
    "ensure_images",
    "free_port",
    "image_inspect",
    "in_ci",
    "missing_tool",
    "require_docker",
    "require_tool",
    "run_container",
    "writable_mount",
]


# --------------------------------------------------------------------------- tools


def in_ci() -> bool:
    """True under CI (``CI=true``, as GitHub Actions, GitLab and ``.ci/run`` set it)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def missing_tool(reason: str) -> None:
    """Skip (outside CI) or fail (under CI) the calling test; ``reason`` names the tool and the fix."""
    if in_ci():
        pytest.fail(f"{reason} [CI=true: every tool must be installed, see .ci/run]", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str, hint: str, candidates: Sequence[Path] = ()) -> str:
    """The path of tool ``name`` (the first existing of ``candidates``, else from PATH)."""
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        missing_tool(f"{name} is not installed ({hint})")
    return str(found)


@functools.cache
def _docker_status() -> str | None:
    """None when a docker client finds an engine that answers, else why not."""
    if shutil.which("docker") is None:
        return "docker is not installed (Debian/Ubuntu: sudo apt-get install docker.io)"
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "docker: the engine did not answer `docker info` within 30 s"
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
        return f"docker: no engine answers (start it: sudo docker/dockerd.sh): {detail[0]}"
    return None


def require_docker() -> None:
    """Skip/fail (see :func:`missing_tool`) unless docker is installed and its engine answers."""
    status = _docker_status()
    if status is not None:
        missing_tool(status)


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``docker ARGS`` and return the completed process (text output captured)."""
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        output = result.stdout[-2000:] + result.stderr[-4000:]
        raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}:\n{output}")
    return result


def image_inspect(image: str) -> dict:
    return json.loads(docker("image", "inspect", image).stdout)[0]


# --------------------------------------------------------------------------- images


def _version() -> str:
    for line in (REPO / "pyproject.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split("=", 1)[1].strip().strip('"')
    raise AssertionError("pyproject.toml has no version")


@dataclass(frozen=True)
class Images:
    """The project's image tags (docker/build-images.sh's defaults, overridable the same way)."""

    pipeline_cpu: str
    mlflow_server: str
    app: str
    serving: str

    @classmethod
    def default(cls) -> Images:
        prefix = os.environ.get("IMAGE_PREFIX", "melanoma-mlops")
        version = _version()
        return cls(
            pipeline_cpu=os.environ.get("PIPELINE_CPU_IMAGE", f"{prefix}/pipeline:{version}-cpu"),
            mlflow_server=os.environ.get("MLFLOW_IMAGE", f"{prefix}/mlflow-server:{version}"),
            app=os.environ.get("APP_IMAGE", f"{prefix}/app:{version}"),
            serving=os.environ.get("SERVING_IMAGE", f"{prefix}/serving:{version}"),
        )


# The build names of docker/build-images.sh, in the order `make images` builds them.
_BUILD_NAMES = {
    "pipeline_cpu": "pipeline-cpu",
    "mlflow_server": "mlflow-server",
    "app": "app",
    "serving": "serving",
}


@functools.cache
def ensure_images(log_dir: Path) -> Images:
    """Build (or, with warm caches, just confirm) the four images once per session.

    The build runs the same script as ``make images``, with the same defaults (the CA bundle in
    ``$CA_BUNDLE`` or ``$PIP_CERT`` as the build secret). Its log goes to ``log_dir/build.log``;
    a failure shows the tail.
    """
    require_docker()
    env = dict(os.environ)
    env.setdefault("CA_BUNDLE", os.environ.get("PIP_CERT", ""))
    log = log_dir / "build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with log.open("w") as out:
        result = subprocess.run(
            [str(BUILD_SCRIPT), *_BUILD_NAMES.values()],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=env,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-6000:]
        raise AssertionError(f"docker/build-images.sh failed ({result.returncode}); log {log}:\n{tail}")
    print(f"images ready in {time.monotonic() - start:.0f} s (log {log})")
    return Images.default()


# --------------------------------------------------------------------------- containers


def writable_mount(folder: Path) -> list[str]:
    """Make ``folder`` writable by a project container; return the extra ``docker run`` arguments.

    - As root here (CI): the folder is created for the image's own user (chown 10001:10001), and
      the container runs as that user.
    - As anyone else: the container runs as this user (``--user UID:GID``); the images work with
      an arbitrary UID (HOME and caches live where any user can write), and the files it writes
      belong to you.

    Never ``chmod 777``, never a container running as root.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if os.getuid() == 0:
        for path in [folder, *folder.rglob("*")]:
            os.chown(path, IMAGE_UID, IMAGE_GID)
        return []
    return ["--user", f"{os.getuid()}:{os.getgid()}"]


@dataclass
class Container:
    name: str
    image: str

    def logs(self, chars: int = CONTAINER_LOG_CHARS) -> str:
        result = docker("logs", self.name, timeout=30, check=False)
        return (result.stdout + result.stderr)[-chars:]

    def exec(self, *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return docker("exec", self.name, *command, timeout=timeout, check=False)

    def running(self) -> bool:
        result = docker("inspect", "--format", "{{.State.Running}}", self.name, timeout=30, check=False)
        return result.stdout.strip() == "true"


@contextlib.contextmanager
def run_container(
    image: str,
    args: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    docker_args: Sequence[str] = (),
    ready_url: str | None = None,
    timeout_s: float = 120,
    label: str = "test",
) -> Iterator[Container]:
    """``docker run -d --network host`` ``image`` ``args``; wait for ``ready_url``; always remove it.

    ``env`` becomes ``-e`` options; ``docker_args`` go before the image (``-v``, ``--user``, ...).
    If the container exits before ``ready_url`` answers, or anything in the ``with`` body fails,
    the container's log is printed (pytest shows it with the failure) before it is removed.
    """
    name = f"melanoma-{label}-{uuid.uuid4().hex[:10]}"
    cmd = ["run", "-d", "--name", name, "--network", "host"]
    for key, value in (env or {}).items():
        cmd += ["-e", f"{key}={value}"]
    cmd += [*docker_args, image, *args]
    docker(*cmd, timeout=120)
    container = Container(name, image)
    try:
        if ready_url is not None:
            _wait_ready(container, ready_url, timeout_s)
        yield container
    except BaseException:
        print(f"----- log of container {name} ({image}) -----\n{container.logs()}")
        raise
    finally:
        docker("rm", "-f", "-v", name, timeout=60, check=False)


def _wait_ready(container: Container, url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            wait_http(url, min(5.0, max(0.5, deadline - time.monotonic())))
            return
        except ServerStartError:
            pass
        if not container.running():
            raise AssertionError(
                f"container {container.name} exited before {url} answered:\n{container.logs()}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer within {timeout_s:.0f} s:\n{container.logs()}")
