"""Real servers for integration tests: a moto S3 endpoint and an MLflow tracking server.

Both are context managers that start a subprocess on 127.0.0.1 with a free port, wait until it
answers over HTTP, yield its URL and always stop it (the whole process group: ``mlflow server``
runs uvicorn workers as children). Nothing here touches the network beyond the loopback.

Typical use (tests/ has no ``__init__.py``, so pytest puts tests/ on ``sys.path``)::

    from servers import mlflow_server, moto_s3, s3_env

    with moto_s3(tmp_path) as endpoint:
        create_bucket(endpoint, "mlflow")
        with mlflow_server(tmp_path, "s3://mlflow/artifacts", s3_env(endpoint)) as url:
            ...  # MLFLOW_TRACKING_URI=url
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

# `mlflow server --workers 1` is ready in about 12 s on a 2-core machine; leave room for a busy CI.
MLFLOW_START_TIMEOUT_S = 90.0
MOTO_START_TIMEOUT_S = 30.0

# Dummy credentials: moto accepts anything, and they keep boto3 from looking for real ones.
DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class ServerStartError(RuntimeError):
    """A server did not come up in time; the message carries the tail of its log."""


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _venv_bin(name: str) -> str:
    """A console script of this interpreter's environment (the venv), else from PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed (pip install 'moto[server]')")
    return found


def _log_tail(log: Path, chars: int = 4000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return "<no log>"


def wait_http(
    url: str, timeout_s: float, proc: subprocess.Popen | None = None, log: Path | None = None
) -> None:
    """Poll ``url`` until it answers (any HTTP status counts); fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            tail = _log_tail(log) if log else ""
            raise ServerStartError(f"process exited with {proc.returncode} before {url} answered:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # the server answered, with an error status: it is up
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.monotonic() > deadline:
            raise ServerStartError(
                f"{url} did not answer within {timeout_s:.0f} s:\n{_log_tail(log) if log else ''}"
            )
        time.sleep(0.3)


def _stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Stop the process group this helper started (SIGTERM, then SIGKILL after ``grace_s``)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=grace_s)
    # Workers may outlive a parent that exited on its own; they share its process group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def _background(cmd: list[str], log: Path, env: Mapping[str, str], cwd: Path) -> Iterator[subprocess.Popen]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        # A new session makes the child the leader of its own process group, so _stop can end it
        # and every worker it forks without touching anything else on the machine.
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=dict(env), cwd=cwd,
            start_new_session=True,
        )  # fmt: skip
        try:
            yield proc
        finally:
            _stop(proc)


def _base_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    # Never pick up a developer's real AWS profile or a proxy for loopback traffic.
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(key, None)
    env.update({"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    env.update(DUMMY_AWS_ENV)
    env.update(extra or {})
    return env


def s3_env(endpoint_url: str) -> dict[str, str]:
    """Environment for a process that talks to the moto endpoint (MLflow honours MLFLOW_S3_ENDPOINT_URL)."""
    return {**DUMMY_AWS_ENV, "MLFLOW_S3_ENDPOINT_URL": endpoint_url}


def s3_client(endpoint_url: str):
    """A boto3 S3 client for the moto endpoint (imported lazily: boto3 is a test-time dependency)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=DUMMY_AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=DUMMY_AWS_ENV["AWS_DEFAULT_REGION"],
    )


def create_bucket(endpoint_url: str, bucket: str) -> None:
    s3_client(endpoint_url).create_bucket(Bucket=bucket)


def list_keys(endpoint_url: str, bucket: str, prefix: str = "") -> list[str]:
    """Every object key under ``prefix`` (paginated)."""
    paginator = s3_client(endpoint_url).get_paginator("list_objects_v2")
    return [
        obj["Key"]
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
        for obj in page.get("Contents", [])
    ]


@contextlib.contextmanager
def moto_s3(tmp: Path) -> Iterator[str]:
    """Run ``moto_server`` on a free loopback port; yield its endpoint URL (``http://127.0.0.1:PORT``)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [_venv_bin("moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with _background(cmd, Path(tmp) / "moto.log", _base_env(None), Path(tmp)) as proc:
        wait_http(f"{url}/moto-api/", MOTO_START_TIMEOUT_S, proc, Path(tmp) / "moto.log")
        yield url


@contextlib.contextmanager
def mlflow_server(
    tmp: Path,
    artifacts_destination: str,
    env: Mapping[str, str] | None = None,
    *,
    auth: bool = False,
    backend_store_uri: str | None = None,
    extra_args: list[str] | None = None,
) -> Iterator[str]:
    """Run a real MLflow tracking server through ``melanoma_mlops.tracking_server`` (the same start
    command as Kubernetes and the CLI); yield its URL once ``/health`` answers.

    The backend is SQLite under ``tmp`` unless ``backend_store_uri`` is given; ``env`` adds to the
    server's environment (e.g. :func:`s3_env` for ``s3://`` destinations, or
    ``MLFLOW_AUTH_ADMIN_PASSWORD`` with ``auth=True``). The server log is ``tmp/mlflow-server.log``.
    """
    tmp = Path(tmp)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    backend = backend_store_uri or f"sqlite:///{tmp / 'mlflow.db'}"
    cmd = [
        sys.executable, "-m", "melanoma_mlops.tracking_server",
        "--backend-store-uri", backend,
        "--artifacts-destination", artifacts_destination,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
        "--auth" if auth else "--no-auth",
        *(extra_args or []),
    ]  # fmt: skip
    server_env = _base_env(env)
    # The auth database defaults to a path relative to the working directory: keep it in tmp.
    server_env.setdefault("MLFLOW_AUTH_DATABASE_URI", f"sqlite:///{tmp / 'basic_auth.db'}")
    # MLflow 3 starts ~8 huey job-runner processes for GenAI jobs by default; the project uses none
    # and the cluster turns them off too (k8s/base/mlflow.yaml). Saves seconds and memory here.
    server_env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    log = tmp / "mlflow-server.log"
    with _background(cmd, log, server_env, tmp) as proc:
        wait_http(f"{url}/health", MLFLOW_START_TIMEOUT_S, proc, log)
        yield url
