"""A registry holding one version of a tiny classifier as the project's pyfunc, for the V2 server's
tests (in process and in the serving image): the whole pipeline is not needed to test a server.

tests/ has no ``__init__.py``, so test modules import this as ``import serving_store``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from melanoma_mlops.artifacts import CHAMPION, MODEL_FILE

#: The demo's model name, so that docs/serving.md's commands run against this store as written.
NAME = "melanoma-resnet50"
THRESHOLD = 0.4321


def register_tiny(root: Path, classifier: Any, name: str = NAME, threshold: float = THRESHOLD) -> str:
    """Register ``classifier`` (a 32-px Keras model) as ``name`` version 1 (@champion) in the SQLite
    store ``root/mlruns/mlflow.db`` (the demo's layout), its artifacts under ``root`` too; return
    the store's URI."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from melanoma_mlops.serving.contract import ModelContract
    from melanoma_mlops.serving.pyfunc import register_pyfunc

    (root / "mlruns").mkdir(parents=True)
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    (root / "model").mkdir()
    classifier.save(root / "model" / MODEL_FILE)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        with contextlib.chdir(root), mlflow.start_run():  # artifacts in root/mlruns, not in the cwd
            version = register_pyfunc(
                str(root / "model"), ModelContract(image_size=32, threshold=threshold), name
            )
        MlflowClient().set_registered_model_alias(name, CHAMPION, version)
    finally:
        mlflow.set_tracking_uri(previous)
    return uri
