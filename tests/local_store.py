"""Run the CLI in a folder of its own, pointed at that folder's MLflow store, as a user's shell would."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def in_local_store(work: Path, db: str = "mlruns/mlflow.db") -> Iterator[str]:
    """cwd = ``work`` and MLFLOW_TRACKING_URI = its SQLite store (yielded); both restored after.

    The module-scoped fixtures that share one pipeline run cannot use monkeypatch (function-scoped),
    hence this; MLflow's own process-wide URI is reset after every test by conftest.
    """
    import mlflow

    from melanoma_mlops import envvars

    uri = f"sqlite:///{work / db}"
    with contextlib.chdir(work), envvars.pinned({"MLFLOW_TRACKING_URI": uri}):
        try:
            yield uri
        finally:
            mlflow.set_tracking_uri(None)  # before the variable it writes is restored
