"""The MLflow store the registry commands (predict, promote, history) talk to.

Kept apart from :mod:`melanoma_pipelines.cli.options`, which imports the Kubeflow layer: these
commands must start without kfp (and without TensorFlow, but for predict's model).
"""

from __future__ import annotations

from pathlib import Path

from melanoma_mlops import tracking_client
from melanoma_mlops.errors import ConfigError


def use_tracking_store() -> str:
    """Point MLflow at the store; refuse a SQLite path that does not exist instead of creating it."""
    import mlflow

    uri = tracking_client.tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise ConfigError(
            f"no MLflow store at {uri.removeprefix('sqlite:///')}: run `melanoma-mlops run` here first, "
            "or set MLFLOW_TRACKING_URI to your tracking server"
        )
    mlflow.set_tracking_uri(uri)
    return uri
