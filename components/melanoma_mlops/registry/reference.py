"""A version's reference profile: what its own validation and test images look like to it.

The drift monitor (``melanoma-mlops monitor``, :mod:`melanoma_mlops.monitoring`) compares the
prediction log against this: the same image statistics and the same scores, computed by the same
code as a served prediction (:mod:`melanoma_mlops.serving.log_records`: encoded bytes vetted,
decoded and scored as the pyfunc does), so a difference is the data's, not the measuring's.
Stored as a Parquet artifact of the register step's run; the version's tag
:data:`REFERENCE_TAG` points at it.

The embedding projection (:mod:`melanoma_mlops.model.embedding`) is fitted here too, before the
version is logged (it is stored with the model): on the pooled features of the version's own
training images, as the split made them (never the oversampled copies, which would weigh the
duplicated lesions twice).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from melanoma_mlops import envvars, storage
from melanoma_mlops.artifacts import MODEL_FILE
from melanoma_mlops.errors import ConfigError
from melanoma_mlops.model.embedding import FIT_MAX_IMAGES, EmbeddingProjection
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


def scoring_classifier(model_dir: str, contract: ModelContract) -> MelanomaClassifier:
    """The trained model as the pyfunc scores with it, in its two-output form (pooled features too)."""
    classifier = MelanomaClassifier()
    classifier.model = load_keras_model(str(Path(model_dir) / MODEL_FILE))
    classifier.contract = contract
    classifier.with_features()
    return classifier


def _chunks(manifest: pd.DataFrame, size: int) -> Iterator[tuple[pd.DataFrame, list, np.ndarray]]:
    """(manifest rows, vetted inputs, decoded pixels) a chunk at a time, read as served."""
    for start in range(0, len(manifest), CHUNK):
        part = manifest.iloc[start : start + CHUNK]
        rows = vetted(pd.DataFrame({IMAGE_COLUMN: [storage.read_bytes(u) for u in part["image_uri"]]}), size)
        yield part, rows, decoded(rows, size)


def fit_projection(
    classifier: MelanomaClassifier, train: pd.DataFrame, seed: int = 0
) -> EmbeddingProjection | None:
    """The embedding projection, fitted on the pooled features of ``train`` (at most
    :data:`~melanoma_mlops.model.embedding.FIT_MAX_IMAGES`, a seeded sample beyond); its size and
    explained variance logged on the active run. None for a model without pooled features."""
    if classifier.scorer is None:
        logger.warning("the model has no pooled-features layer: its version gets no embedding projection")
        return None
    if len(train) > FIT_MAX_IMAGES:
        train = train.sample(FIT_MAX_IMAGES, random_state=seed)
    features = [classifier.scores(batch)[1] for _, _, batch in _chunks(train, classifier.image_size)]
    projection = EmbeddingProjection.fit(np.concatenate(features), seed=seed)
    mlflow.log_params({"embedding_dims": projection.dims, "embedding_fit_images": projection.n_fitted})
    mlflow.log_metric("embedding_explained_variance", projection.explained_variance)
    logger.info(
        "embedding projection: %d axes of %d pooled features, fitted on %d training images, "
        "explaining %.1f%% of their variance",
        projection.dims, projection.mean.shape[0], projection.n_fitted, 100 * projection.explained_variance,
    )  # fmt: skip
    return projection


def profile(
    classifier: MelanomaClassifier, splits: dict[str, pd.DataFrame], identity: ModelIdentity
) -> pd.DataFrame:
    """One prediction-log record per image of ``splits`` (name -> manifest), with ``split`` and
    the true ``label`` in ``true_label``; the embedding columns when ``classifier`` has a projection."""
    frames = []
    for split, manifest in splits.items():
        for part, rows, batch in _chunks(manifest, classifier.image_size):
            probabilities, features = classifier.scores(batch)
            projection = classifier.projection
            records = build_records(
                source=f"reference-{split}",
                model=identity,
                items=rows,
                pixels=batch,
                probabilities=probabilities,
                threshold=classifier.threshold,
                embeddings=projection.apply(features) if projection and features is not None else None,
            )
            frame = pd.DataFrame(records).assign(split=split, true_label=part["label"].to_numpy())
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def log_profile(
    classifier: MelanomaClassifier, splits: dict[str, pd.DataFrame], model_name: str, version: str
) -> str:
    """Compute the profile, log it on the active run and tag the version with its URI (returned)."""
    run = mlflow.active_run()
    if run is None:
        raise ConfigError("the reference profile is logged inside the register step's run")
    frame = profile(classifier, splits, ModelIdentity(model_name, version))
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
