"""A version's reference profile: what its own validation and test images look like to it.

The drift monitor (``melanoma-mlops monitor``, :mod:`melanoma_mlops.monitoring`) compares the
prediction log against this: the same image statistics and the same scores, computed by the same
code as a served prediction (:mod:`melanoma_mlops.serving.log_records`: encoded bytes vetted,
decoded and scored as the pyfunc does), so a difference is the data's, not the measuring's.
Stored as a Parquet artifact of the register step's run; the version's tag
:data:`REFERENCE_TAG` points at it.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from melanoma_mlops import envvars, storage
from melanoma_mlops.artifacts import MODEL_FILE
from melanoma_mlops.errors import ConfigError
from melanoma_mlops.serving.contract import ModelContract
from melanoma_mlops.serving.inputs import IMAGE_COLUMN, decoded, vetted
from melanoma_mlops.serving.log_records import ModelIdentity, build_records
from melanoma_mlops.serving.pyfunc import MelanomaClassifier, load_keras_model

logger = logging.getLogger(__name__)

REFERENCE_FILE = "reference_profile.parquet"
#: The version tag holding the profile's ``runs:/`` URI.
REFERENCE_TAG = "monitor_reference"
#: Images read, decoded and scored at a time.
CHUNK = 64


def profile(
    model_dir: str, contract: ModelContract, splits: dict[str, pd.DataFrame], identity: ModelIdentity
) -> pd.DataFrame:
    """One prediction-log record per image of ``splits`` (name -> manifest), with ``split`` and
    the true ``label`` in ``true_label``."""
    classifier = MelanomaClassifier()
    classifier.model = load_keras_model(str(Path(model_dir) / MODEL_FILE))
    classifier.contract = contract
    size = contract.image_size
    frames = []
    for split, manifest in splits.items():
        for start in range(0, len(manifest), CHUNK):
            part = manifest.iloc[start : start + CHUNK]
            rows = vetted(
                pd.DataFrame({IMAGE_COLUMN: [storage.read_bytes(u) for u in part["image_uri"]]}), size
            )
            batch = decoded(rows, size)
            records = build_records(
                source=f"reference-{split}",
                model=identity,
                items=rows,
                pixels=batch,
                probabilities=classifier.probabilities(batch),
                threshold=contract.threshold,
            )
            frame = pd.DataFrame(records).assign(split=split, true_label=part["label"].to_numpy())
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def log_profile(
    model_dir: str, contract: ModelContract, splits: dict[str, pd.DataFrame], model_name: str, version: str
) -> str:
    """Compute the profile, log it on the active run and tag the version with its URI (returned)."""
    run = mlflow.active_run()
    if run is None:
        raise ConfigError("the reference profile is logged inside the register step's run")
    frame = profile(model_dir, contract, splits, ModelIdentity(model_name, version))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / REFERENCE_FILE
        frame.to_parquet(path, index=False)
        mlflow.log_artifact(str(path))
    uri = f"runs:/{run.info.run_id}/{REFERENCE_FILE}"
    MlflowClient().set_model_version_tag(model_name, version, REFERENCE_TAG, uri)
    logger.info("reference profile of %s version %s: %d images (%s)", model_name, version, len(frame), uri)
    return uri


def load_profile(model_name: str, version: str) -> pd.DataFrame:
    """The version's reference profile; a ConfigError when it has none (registered before profiles)."""
    tags = MlflowClient().get_model_version(model_name, version).tags
    uri = tags.get(REFERENCE_TAG)
    if not uri:
        raise ConfigError(
            f"{model_name} version {version} has no reference profile (tag {REFERENCE_TAG}): it was "
            "registered before profiles were recorded; register a new version to monitor it"
        )
    quiet = envvars.pinned({"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})  # a bar on the console
    with tempfile.TemporaryDirectory() as tmp, quiet:
        try:
            return pd.read_parquet(mlflow.artifacts.download_artifacts(uri, dst_path=tmp))
        except (MlflowException, OSError, ValueError) as exc:
            raise ConfigError(
                f"{model_name} version {version}: its reference profile {uri} cannot be read ({exc})"
            ) from exc
