"""``melanoma-mlops serve``: the V2 (Open Inference) REST server of a registered model, on this machine
or in the serving image (k8s/serving).

The model URI is resolved to its registered version first (a ``models:/NAME@champion`` answers with
the version it stood for at start-up, never a moving "latest"), then loaded with
``mlflow.pyfunc.load_model``: every prediction goes through the registered pyfunc
(:mod:`melanoma_mlops.serving.v2`). Binds 127.0.0.1 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import logging

from melanoma_mlops import MODEL_NAME, tracking_client
from melanoma_mlops.artifacts import CHAMPION
from melanoma_mlops.errors import ConfigError
from melanoma_pipelines.cli.store import use_tracking_store

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8080


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``serve`` on the main parser's subcommands."""
    serve = subparsers.add_parser(
        "serve",
        help="serve a registered model over the V2 (Open Inference) REST protocol (default: @champion)",
        description="Load a registered version through its MLflow pyfunc and answer V2 requests: "
        "GET /v2/health/live, /v2/health/ready, /v2/models/NAME, /v2/models/NAME/ready and "
        "POST /v2/models/NAME/infer with a BYTES input 'image' of base64 image files "
        "(docs/serving.md). The registry is MLFLOW_TRACKING_URI, else ./mlruns/mlflow.db.",
    )
    serve.add_argument(
        "--model-uri",
        default=f"models:/{MODEL_NAME}@{CHAMPION}",
        help="models:/NAME@ALIAS, models:/NAME/VERSION or a model folder (default: %(default)s)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    serve.add_argument(
        "--timeout", type=float, default=60.0, help="seconds a request may run before its 504 (default: 60)"
    )
    serve.add_argument(
        "--name", default=None, help="the model name the protocol uses (default: the registered name)"
    )
    serve.set_defaults(func=cmd_serve)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 1-65535")
    return port


def _check_port(host: str, port: int) -> None:
    import socket

    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}): pass another --port or --host"
        ) from None


def load_served_model(model_uri: str, name: str | None = None):  # -> ServedModel
    """Resolve ``model_uri`` to its registered version and load its pyfunc."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from melanoma_mlops.registry.lookup import version_of_uri
    from melanoma_mlops.serving.pyfunc import unwrap
    from melanoma_mlops.serving.v2 import ServedModel

    registered, version = name, ""
    load_uri = model_uri
    if model_uri.startswith("models:/"):
        try:
            mv = version_of_uri(MlflowClient(), model_uri)
        except (MlflowException, ValueError) as exc:
            raise ConfigError(
                f"{model_uri} is not in the registry at {tracking_client.tracking_uri()}: {exc}"
            ) from exc
        registered, version = name or mv.name, str(mv.version)
        load_uri = f"models:/{mv.name}/{mv.version}"  # pinned: an alias moved later changes nothing here
    from melanoma_mlops.serving.prediction_log import serve_as

    serve_as("endpoint")  # what the V2 server scores goes to the prediction log (docs/monitoring.md)
    try:
        loaded = mlflow.pyfunc.load_model(load_uri)
    except (MlflowException, OSError) as exc:
        raise ConfigError(f"cannot load {load_uri} from {tracking_client.tracking_uri()}: {exc}") from exc
    contract = unwrap(loaded).contract
    return ServedModel(loaded, registered or MODEL_NAME, version, contract.threshold)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from melanoma_mlops.serving.v2 import create_app

    if args.timeout <= 0:
        raise ConfigError(f"--timeout must be above 0 seconds, not {args.timeout:g}")
    _check_port(args.host, args.port)  # before the seconds of loading the model
    if args.model_uri.startswith("models:/"):
        use_tracking_store()
    model = load_served_model(args.model_uri, args.name)
    logger.info(
        "serving %s version %s (threshold %.4g) on http://%s:%d/v2/models/%s",
        model.name,
        model.version or "-",
        model.threshold,
        args.host,
        args.port,
        model.name,
    )
    uvicorn.run(create_app(model, args.timeout), host=args.host, port=args.port, log_level="warning")
    return 0
