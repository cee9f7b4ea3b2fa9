"""Run the CLI in a folder of its own, pointed at that folder's MLflow store, as a user's shell would."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def in_local_store(work: Path, db: str = "mlruns/mlflow.db") -> Iterator[str]:
    """cwd = ``work`` and MLFLOW_TRACKING_URI = its SQLite store (yielded); both restored after.

    The module-scoped fixtures that share one pipeline run cannot use monkeypatch (function-scoped),
    hence this; MLflow's own process-wide URI is reset after every test by conftest.
    """
    import mlflow

    uri = f"sqlite:///{work / db}"
    old_cwd, old_uri = Path.cwd(), os.environ.get("MLFLOW_TRACKING_URI")
    os.chdir(work)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        yield uri
    finally:
        os.chdir(old_cwd)
        if old_uri is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old_uri
        mlflow.set_tracking_uri(None)
