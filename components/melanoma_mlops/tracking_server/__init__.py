"""Start an MLflow tracking server: the one command used on a laptop, by the CLI and in Kubernetes.

The same :func:`build_server_command` produces the ``mlflow server`` command line everywhere, so the
local server and the cluster server differ only in their store URIs:

- locally (the defaults): a SQLite backend ``sqlite:///mlruns/mlflow.db`` and artifacts in
  ``./mlruns/artifacts``;
- on a cluster (``k8s/``): a PostgreSQL backend and ``s3://`` artifacts on MinIO. MLflow itself
  honours ``MLFLOW_S3_ENDPOINT_URL`` and the ``AWS_*`` credentials from the environment.

Artifacts are always *proxied* (``--serve-artifacts``): clients upload and download through the
server's REST API, so pipeline pods and the app need the tracking URI and MLflow credentials only,
never the object store's keys.

This package imports nothing outside the standard library at import time (boto3 only inside
:func:`ensure_bucket`), and ``melanoma_mlops/__init__.py`` holds only constants: the MLflow server
image installs the project wheel with ``--no-deps`` next to mlflow, boto3 and psycopg2 (no
TensorFlow) and runs ``python -m melanoma_mlops.tracking_server``. The basic-auth template
``basic_auth.ini`` ships inside this package, so ``--auth`` works from any installation.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import secrets
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlparse

from .auth import AUTH_TEMPLATE_FILE as AUTH_TEMPLATE_FILE  # re-exported: its name from before auth.py
from .auth import (
    DEFAULT_AUTH_DATABASE_URI,
    ENV_AUTH_DATABASE_URI,
    default_auth_template,
    read_secret_file,
    render_auth_config,
)
from .errors import ServerConfigError

logger = logging.getLogger(__name__)

DEFAULT_BACKEND_STORE_URI = "sqlite:///mlruns/mlflow.db"
DEFAULT_ARTIFACTS_DESTINATION = "./mlruns/artifacts"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
DEFAULT_WORKERS = 1
#: The ``mlflow.app`` plugins of this package (pyproject.toml): MLflow's server app and its
#: basic-auth app, each serving the UI in its Model training view (:mod:`.ui_app`).
UI_APP = "melanoma"
AUTH_APP = "melanoma-basic-auth"

# Environment variables read by main() for its defaults (flags win over them).
ENV_BACKEND_STORE_URI = "MLFLOW_BACKEND_STORE_URI"
ENV_ARTIFACTS_DESTINATION = "MLFLOW_ARTIFACTS_DESTINATION"
ENV_HOST = "MLFLOW_HOST"
ENV_PORT = "MLFLOW_PORT"
ENV_WORKERS = "MLFLOW_WORKERS"
ENV_AUTH = "MLFLOW_AUTH"
# MLflow's own names, read by mlflow itself as well; reused so there is one name per setting.
ENV_ALLOWED_HOSTS = "MLFLOW_SERVER_ALLOWED_HOSTS"
ENV_CORS_ALLOWED_ORIGINS = "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"
ENV_AUTH_CONFIG_PATH = "MLFLOW_AUTH_CONFIG_PATH"
# The auth template (basic_auth.ini, package data); the value of its placeholder: auth.ENV_AUTH_DATABASE_URI.
ENV_AUTH_CONFIG_TEMPLATE = "MLFLOW_AUTH_CONFIG_TEMPLATE"
# basic-auth's CSRF protection refuses to start without it; all replicas must share one value.
ENV_FLASK_SECRET_KEY = "MLFLOW_FLASK_SERVER_SECRET_KEY"
ENV_ADMIN_PASSWORD = "MLFLOW_AUTH_ADMIN_PASSWORD"
# Secrets as files (a mounted Kubernetes Secret) instead of environment variables: the admin
# password goes into the rendered 0600 auth config (never the server's environment), the Flask
# key only into the environment of the `mlflow server` process this command replaces itself with.
ENV_ADMIN_PASSWORD_FILE = "MLFLOW_AUTH_ADMIN_PASSWORD_FILE"
ENV_FLASK_SECRET_KEY_FILE = "MLFLOW_FLASK_SERVER_SECRET_KEY_FILE"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def build_server_command(
    backend_store_uri: str,
    artifacts_destination: str,
    host: str,
    port: int,
    workers: int = 1,
    auth: bool = False,
    *,
    allowed_hosts: str | None = None,
    cors_allowed_origins: str | None = None,
) -> list[str]:
    """The ``mlflow server`` argv (run with this interpreter, so the same environment is used).

    ``allowed_hosts`` matters on a cluster: MLflow 3 rejects Host headers other than localhost and
    private IPs (DNS-rebinding protection), and in-cluster clients send ``mlflow.<namespace>...``.
    ``auth`` serves MLflow's ``basic-auth`` app (as :data:`AUTH_APP`); its configuration comes from
    ``MLFLOW_AUTH_CONFIG_PATH`` (see :func:`render_auth_config`).
    """
    if not backend_store_uri:
        raise ServerConfigError("the backend store URI is empty (e.g. sqlite:///mlruns/mlflow.db)")
    if not artifacts_destination:
        raise ServerConfigError(
            "the artifacts destination is empty (e.g. ./mlruns/artifacts or s3://bucket/p)"
        )
    if not 0 < port < 65536:
        raise ServerConfigError(f"port {port} is outside 1..65535")
    if workers < 1:
        raise ServerConfigError(f"workers must be at least 1, got {workers}")
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend_store_uri,
        # Proxied artifacts: new experiments get mlflow-artifacts:/ locations that the server
        # resolves under the destination, so clients never need object-store credentials.
        "--serve-artifacts",
        "--artifacts-destination", artifacts_destination,
        "--host", host,
        "--port", str(port),
        "--workers", str(workers),
    ]  # fmt: skip
    # MLflow's app (or its basic-auth app) with the UI opening in the Model training view (ui_app.py).
    command += ["--app-name", AUTH_APP if auth else UI_APP]
    if allowed_hosts:
        command += ["--allowed-hosts", allowed_hosts]
    if cors_allowed_origins:
        command += ["--cors-allowed-origins", cors_allowed_origins]
    return command


_URI_PASSWORD = re.compile(r"(://[^:/@\s]*:)([^@\s]+)(@)")
_QUERY_SECRET = re.compile(r"([?&;](?:password|passwd|pwd|secret|token|key)=)([^&;\s]+)", re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """``postgresql://user:***@host/db``: passwords in URIs and query strings replaced by ``***``."""
    return _QUERY_SECRET.sub(r"\1***", _URI_PASSWORD.sub(r"\1***\3", text))


def ensure_bucket(uri: str, endpoint_url: str | None = None, timeout_s: float = 120.0) -> bool:
    """Create the bucket of an ``s3://bucket/prefix`` URI if it is missing; True if it was created.

    Retries until ``timeout_s`` while the endpoint is not reachable yet (MinIO starting). Used by the
    Kubernetes bucket Job (``--ensure-bucket``) and by tests against moto.
    """
    import boto3
    from botocore.exceptions import ClientError, EndpointConnectionError

    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ServerConfigError(f"{uri!r} is not an s3://bucket/prefix URI")
    bucket = parsed.netloc
    client = boto3.client("s3", endpoint_url=endpoint_url or os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.head_bucket(Bucket=bucket)
            logger.info("bucket %s exists", bucket)
            return False
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code not in {"404", "NoSuchBucket", "NotFound"}:
                raise
            client.create_bucket(Bucket=bucket)
            logger.info("created bucket %s", bucket)
            return True
        except EndpointConnectionError:
            if time.monotonic() > deadline:
                raise
            logger.info("object store not reachable yet, retrying in 3 s")
            time.sleep(3)


def _env_bool(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ServerConfigError(f"{name}={raw!r} is not a boolean (use true/false)")


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ServerConfigError(f"{name}={raw!r} is not an integer") from exc


def build_parser(env: Mapping[str, str] | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Start an MLflow tracking server with proxied artifacts (local SQLite by default; "
        "PostgreSQL + s3:// on a cluster). Every option defaults to the environment variable named "
        "in its help.",
    )
    _add_serving_options(parser, env)
    _add_access_options(parser, env)
    parser.add_argument(
        "--ensure-bucket",
        action="store_true",
        help="create the s3:// bucket of --artifacts-destination if missing (MLFLOW_S3_ENDPOINT_URL "
        "and AWS_* credentials from the environment), then exit without starting the server",
    )
    parser.add_argument("--print-command", action="store_true", help="print the server command and exit")
    return parser


def _add_serving_options(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """Where runs and artifacts are stored, and where and how the server listens."""
    parser.add_argument(
        "--backend-store-uri",
        default=env.get(ENV_BACKEND_STORE_URI) or DEFAULT_BACKEND_STORE_URI,
        help=f"SQLAlchemy URI of runs and registry [${ENV_BACKEND_STORE_URI}, default %(default)s]",
    )
    parser.add_argument(
        "--artifacts-destination",
        default=env.get(ENV_ARTIFACTS_DESTINATION) or DEFAULT_ARTIFACTS_DESTINATION,
        help=f"where proxied artifacts are stored: a folder or s3://bucket/prefix "
        f"[${ENV_ARTIFACTS_DESTINATION}, default %(default)s]",
    )
    parser.add_argument(
        "--host",
        default=env.get(ENV_HOST) or DEFAULT_HOST,
        help=f"interface to bind; 0.0.0.0 in a container [${ENV_HOST}, default %(default)s]",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=_env_int(env, ENV_PORT, DEFAULT_PORT),
        help=f"[${ENV_PORT}, default %(default)s]",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=_env_int(env, ENV_WORKERS, DEFAULT_WORKERS),
        help=f"uvicorn worker processes [${ENV_WORKERS}, default %(default)s]",
    )


def _add_access_options(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """Who may use the server: basic-auth and its template, the Host headers and CORS origins accepted."""
    parser.add_argument(
        "--auth",
        action=argparse.BooleanOptionalAction,
        default=_env_bool(env, ENV_AUTH),
        help=f"serve MLflow's basic-auth app; the admin password comes from the file named by "
        f"{ENV_ADMIN_PASSWORD_FILE} (or MLFLOW_AUTH_ADMIN_PASSWORD), the Flask key from "
        f"{ENV_FLASK_SECRET_KEY_FILE} (or {ENV_FLASK_SECRET_KEY}); the password is used "
        f"on first start [${ENV_AUTH}, default %(default)s]",
    )
    parser.add_argument(
        "--allowed-hosts",
        default=env.get(ENV_ALLOWED_HOSTS) or None,
        help=f"comma-separated Host headers accepted (wildcards allowed); MLflow's default is localhost "
        f"and private IPs [${ENV_ALLOWED_HOSTS}]",
    )
    parser.add_argument(
        "--cors-allowed-origins",
        default=env.get(ENV_CORS_ALLOWED_ORIGINS) or None,
        help=f"comma-separated origins allowed to make state-changing requests [${ENV_CORS_ALLOWED_ORIGINS}]",
    )
    parser.add_argument(
        "--auth-config-template",
        type=Path,
        default=Path(env[ENV_AUTH_CONFIG_TEMPLATE]) if env.get(ENV_AUTH_CONFIG_TEMPLATE) else None,
        help=f"basic-auth ini with ${{{ENV_AUTH_DATABASE_URI}}} placeholders; ignored when "
        f"{ENV_AUTH_CONFIG_PATH} is set [${ENV_AUTH_CONFIG_TEMPLATE}, default: the packaged basic_auth.ini]",
    )


def _ensure_sqlite_parent(uri: str) -> None:
    """SQLite cannot create its parent folder (``sqlite:///mlruns/mlflow.db``): make it up front."""
    if uri.startswith("sqlite:///"):
        db_path = uri.removeprefix("sqlite:///")
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)


def _ensure_local_dir(uri: str) -> None:
    """A local artifacts destination (a path or file:// URI) is created; remote ones are left alone."""
    if "://" not in uri or uri.startswith("file://"):
        Path(uri.removeprefix("file://")).mkdir(parents=True, exist_ok=True)


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Parse options (defaults from the environment) and exec ``mlflow server``.

    Returns only for ``--print-command`` and ``--ensure-bucket`` (exit status 0); otherwise the
    process is replaced by the server, so signals from Kubernetes reach it directly.
    """
    env = dict(os.environ)
    try:
        args = build_parser(env, prog).parse_args(argv)
        if args.ensure_bucket:
            ensure_bucket(args.artifacts_destination)
            return 0
        command = build_server_command(
            args.backend_store_uri,
            args.artifacts_destination,
            args.host,
            args.port,
            args.workers,
            args.auth,
            allowed_hosts=args.allowed_hosts,
            cors_allowed_origins=args.cors_allowed_origins,
        )
        if args.print_command:
            sys.stdout.write(mask_secrets(" ".join(command)) + "\n")
            return 0
        if args.auth:
            _auth_environment(env, args.auth_config_template)
    except ServerConfigError as exc:
        logger.error("%s", exc)
        return 2
    if not args.auth and args.host not in {"127.0.0.1", "localhost", "::1"}:
        logger.warning(
            "serving MLflow on %s without --auth: anyone who reaches the port can read and write runs",
            args.host,
        )
    _ensure_sqlite_parent(args.backend_store_uri)
    _ensure_local_dir(args.artifacts_destination)
    logger.info("starting: %s", mask_secrets(" ".join(command)))
    os.execve(command[0], command, env)
    return 0  # pragma: no cover - execve does not return


def _auth_environment(env: dict[str, str], template: Path | None) -> None:
    """Complete the ``--auth`` server's environment ``env``: its auth config and Flask secret key.

    The secrets may come as files (``*_FILE``): the admin password only into the rendered config,
    the Flask key only into ``env`` (the server process's, not this one's).
    """
    admin_password = read_secret_file(env, ENV_ADMIN_PASSWORD_FILE)
    flask_key = read_secret_file(env, ENV_FLASK_SECRET_KEY_FILE)
    if admin_password is not None:
        if env.get(ENV_AUTH_CONFIG_PATH):
            raise ServerConfigError(
                f"{ENV_ADMIN_PASSWORD_FILE} is written into the auth config rendered from the template; "
                f"with your own {ENV_AUTH_CONFIG_PATH} put admin_password in that file instead"
            )
        if env.pop(ENV_ADMIN_PASSWORD, None) is not None:
            logger.warning("%s is set as well: the file %s wins", ENV_ADMIN_PASSWORD, ENV_ADMIN_PASSWORD_FILE)
    if not env.get(ENV_AUTH_CONFIG_PATH):
        env[ENV_AUTH_CONFIG_PATH] = str(_rendered_auth_config(env, template, admin_password))
        _ensure_sqlite_parent(env.get(ENV_AUTH_DATABASE_URI, DEFAULT_AUTH_DATABASE_URI))
    if flask_key is not None:
        env[ENV_FLASK_SECRET_KEY] = flask_key  # the server process's environment only
    if not env.get(ENV_FLASK_SECRET_KEY):
        # Fine for one local server (its workers inherit it); browser sessions end at restart.
        # Several replicas need one shared key: the cluster sets it from the mlflow-auth Secret.
        logger.warning("%s is not set: using a random key for this server process", ENV_FLASK_SECRET_KEY)
        env[ENV_FLASK_SECRET_KEY] = secrets.token_hex(32)


def _rendered_auth_config(env: Mapping[str, str], template: Path | None, admin_password: str | None) -> Path:
    """The auth config rendered from ``template`` (default: the packaged one) into a private folder."""
    template = template or default_auth_template()
    if template is None:
        raise ServerConfigError(
            f"--auth needs the basic-auth template: set {ENV_AUTH_CONFIG_TEMPLATE} or "
            f"{ENV_AUTH_CONFIG_PATH}, or pass --auth-config-template"
        )
    return render_auth_config(
        template, Path(tempfile.mkdtemp(prefix="mlflow-auth-")), env, admin_password=admin_password
    )
