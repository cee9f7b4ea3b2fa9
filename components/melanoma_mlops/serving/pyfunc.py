"""The registered model: an MLflow pyfunc that takes raw images and owns all preprocessing.

Input vetting and decoding live in :mod:`melanoma_mlops.serving.inputs` (what is accepted) and the
modules it draws on (formats, headers, memory_budget, decoding: how pixels are made), the model's
promises in :class:`~melanoma_mlops.serving.contract.ModelContract`.
Output: one row per image with ``probability`` (of malignancy), ``label`` (1 = malignant at the
threshold frozen on validation) and ``class_name``. A version registered with an embedding
projection (:mod:`melanoma_mlops.model.embedding`, ``projection.json``) also hands each image's
compact embedding to the prediction log, from the same forward pass.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import BAD_REQUEST, DEADLINE_EXCEEDED, TEMPORARILY_UNAVAILABLE
from mlflow.types import ColSpec, Schema

import melanoma_mlops
from melanoma_mlops.artifacts import MODEL_FILE
from melanoma_mlops.errors import ConfigError
from melanoma_mlops.model.embedding import PROJECTION_FILE, EmbeddingProjection, with_pooled_features
from melanoma_mlops.serving import admission, memory_budget, prediction_log
from melanoma_mlops.serving.contract import ModelContract
from melanoma_mlops.serving.inputs import IMAGE_COLUMN, decoded, vetted
from melanoma_mlops.serving.log_records import ModelIdentity

if TYPE_CHECKING:
    import keras

logger = logging.getLogger(__name__)

KERAS_ARTIFACT = "keras_model"
CONTRACT_ARTIFACT = "contract"
#: Optional: versions registered before embeddings have none (they serve, and log no embedding).
PROJECTION_ARTIFACT = "projection"
# ``binary``: MLflow's scoring server base64-decodes this column of dataframe_split/_records JSON.
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("binary", IMAGE_COLUMN)]),
    outputs=Schema(
        [ColSpec("double", "probability"), ColSpec("long", "label"), ColSpec("string", "class_name")]
    ),
)


def input_example() -> pd.DataFrame:
    """One tiny PNG: MLflow saves it with the model as ``serving_input_example.json`` (the exact
    JSON body a REST client sends) and, at logging time, loads the model and runs it once, so a
    version that cannot serve is never registered.
    """
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(buf, format="PNG")
    return pd.DataFrame({IMAGE_COLUMN: [buf.getvalue()]})


def load_keras_model(path: str) -> keras.Model:
    """The saved Keras classifier, as the pyfunc loads it (no optimizer state)."""
    import keras

    from melanoma_mlops.model import network as _model

    return keras.models.load_model(
        path, compile=False, custom_objects={"ResNetPreprocess": _model.ResNetPreprocess}
    )


#: Batches up to this many images are scored by calling the model directly, one image per call (see
#: ``probabilities``).
DIRECT_CALL_MAX = 4


class MelanomaClassifier(mlflow.pyfunc.PythonModel):
    """Raw image in, malignancy probability and thresholded label out."""

    model: keras.Model
    contract: ModelContract
    identity: ModelIdentity = ModelIdentity()
    #: The classifier with its pooled features as a second output (:meth:`with_features`), or None.
    scorer: keras.Model | None = None
    projection: EmbeddingProjection | None = None

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.model = load_keras_model(context.artifacts[KERAS_ARTIFACT])
        with open(context.artifacts[CONTRACT_ARTIFACT]) as fh:
            self.contract = ModelContract.from_dict(json.load(fh))
        if PROJECTION_ARTIFACT in context.artifacts:  # the embedding is for monitoring: never stops serving
            try:
                self.use_projection(EmbeddingProjection.load(context.artifacts[PROJECTION_ARTIFACT]))
            except ConfigError as exc:
                logger.warning("%s: predictions are logged without embedding", exc)
        # <model>/artifacts/contract.json: the model's folder holds its registered name and version.
        self.identity = ModelIdentity.of_model_dir(Path(context.artifacts[CONTRACT_ARTIFACT]).parent.parent)
        if SCORING_SERVER in sys.modules:
            prediction_log.serve_as("mlflow-serve")
        prediction_log.active()  # a bad MELANOMA_PREDICTION_LOG_* setting stops the load, not a request
        harden_scoring_server()
        # The decode and request budgets are what is left of the memory limit once the model is resident.
        budget = memory_budget.decode_budget(refresh=True)
        admission.for_process(refresh=True, image_size=self.contract.image_size)
        logger.info(
            "decoding at most %d image(s) at a time, each up to %s pixels at full size (%s)",
            memory_budget.DECODE_SLOTS,
            f"{budget.pixels:,}",
            budget.describe(),
        )

    @property
    def image_size(self) -> int:
        return self.contract.image_size

    @property
    def threshold(self) -> float:
        return self.contract.threshold

    def with_features(self) -> bool:
        """Build (once) the two-output model that also returns the pooled features; False when
        the Keras model has no pooling layer to read them from."""
        if self.scorer is None:
            self.scorer = with_pooled_features(self.model)
        return self.scorer is not None

    def use_projection(self, projection: EmbeddingProjection) -> None:
        """Embed what is scored with ``projection`` (a model without pooled features logs none)."""
        if self.with_features():
            self.projection = projection
        else:
            logger.warning(
                "the model has no pooled-features layer: its predictions are logged without embedding"
            )

    def scores(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """P(malignant) and, when the model has its two-output form (:meth:`with_features`), the
        pooled features (N, width) of the same forward pass; else None. Batched as
        :meth:`probabilities` is."""
        if self.scorer is None or not len(batch):
            return self.probabilities(batch), None
        if len(batch) <= DIRECT_CALL_MAX:
            outs = [self.scorer(batch[i : i + 1], training=False) for i in range(len(batch))]
            probs = np.concatenate([np.asarray(p).ravel() for p, _ in outs])
            features = np.concatenate([np.asarray(f) for _, f in outs])
        else:
            probs, features = self.scorer.predict(batch, verbose=0)
        return np.asarray(probs).ravel().astype(float), np.asarray(features).reshape(len(batch), -1)

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """P(malignant) for a batch already prepared by :func:`images_from_input`.

        A few images (an upload, ``predict`` on some files) go through direct calls of the model:
        ``model.predict`` first traces a graph function, which costs seconds more than scoring a
        handful of images (benchmarks/bench_commands.py); larger batches use ``predict``'s batching.
        Both run the same layers in inference mode. One image per direct call: an eager call holds
        far more memory per image than ``predict`` (ResNet50 at 224 px, measured: +180 MiB for one
        image, +2.8 GiB for 16, against +440 MiB for ``predict`` of 16), and 16 at once got
        ``mlflow models serve`` OOM-killed in its 3 GiB pod (serving/admission.py budgets a chunk).
        """
        if not len(batch):
            return np.zeros(0)
        if len(batch) <= DIRECT_CALL_MAX:
            return np.concatenate(
                [np.asarray(self.model(batch[i : i + 1], training=False)).ravel() for i in range(len(batch))]
            ).astype(float)
        return self.model.predict(batch, verbose=0).ravel().astype(float)

    def scored(self, model_input: Any) -> np.ndarray:
        """P(malignant) per row, decoded and scored a chunk at a time (one chunk in the network per
        process), the current request's deadline checked between chunks (:mod:`.admission`)."""
        rows = vetted(model_input, self.image_size)
        probs = [np.zeros(0)]
        for start in range(0, len(rows), admission.CHUNK_ROWS):
            admission.check_deadline(f"scoring rows {start}-{len(rows) - 1}")
            batch = decoded(rows[start : start + admission.CHUNK_ROWS], self.image_size, first_row=start)
            with admission.inference_slot():
                chunk_probs, features = self.scores(batch)
            probs.append(chunk_probs)
            self.log_scored(rows[start : start + admission.CHUNK_ROWS], batch, chunk_probs, features)
        return np.concatenate(probs)

    def log_scored(
        self, rows: Any, batch: np.ndarray, probabilities: np.ndarray, features: np.ndarray | None = None
    ) -> None:
        """Hand a scored chunk to the prediction log (:mod:`.prediction_log`: queued, written by
        another thread, a no-op unless this process serves predictions). ``rows`` are the vetted
        inputs (:func:`~melanoma_mlops.serving.inputs.vetted`), ``batch`` the pixels scored,
        ``features`` their pooled features (embedded with the version's projection, if any)."""
        prediction_log.record_scored(
            self.identity, self.threshold, rows, batch, probabilities,
            projection=self.projection if features is not None else None, features=features,
        )  # fmt: skip

    # The DataFrame hint is one MLflow accepts without trying to infer a schema from it (it warns
    # "Failed to infer signature from type hint" for Any); the explicit SIGNATURE above
    # is the contract. Dicts and 4-D arrays are accepted too when this method is called directly.
    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        probs = self.scored(model_input)
        labels = (probs >= self.threshold).astype(int)
        return pd.DataFrame(
            {
                "probability": probs,
                "label": labels,
                "class_name": [self.contract.class_name(y) for y in labels],
            }
        )


# ---------------------------------------------------------------------------------------------
# Logging and registering a version: the Keras model, its contract and this package in one pyfunc
# ---------------------------------------------------------------------------------------------

#: The package shipped with every model (``code_paths``), so a loaded model runs the code it was
#: registered with.
PACKAGE_DIR = Path(melanoma_mlops.__file__).parent


def _pip_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for dist in ("mlflow", "keras", "tensorflow", "tensorflow-cpu", "pillow", "pandas", "numpy"):
        try:
            reqs.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            continue
    return reqs


def register_pyfunc(
    model_dir: str, contract: ModelContract, model_name: str, projection: EmbeddingProjection | None = None
) -> str:
    """Log the self-contained pyfunc (Keras model + contract + embedding projection + this package)
    on the active run and register it as a new version of ``model_name``; return the version."""
    with tempfile.TemporaryDirectory() as tmp:
        contract_path = Path(tmp) / "contract.json"
        contract_path.write_text(json.dumps(contract.to_dict(), indent=2))
        artifacts = {KERAS_ARTIFACT: str(Path(model_dir) / MODEL_FILE), CONTRACT_ARTIFACT: str(contract_path)}
        if projection is not None:
            artifacts[PROJECTION_ARTIFACT] = str(projection.save(Path(tmp) / PROJECTION_FILE))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=MelanomaClassifier(),
            artifacts=artifacts,
            signature=SIGNATURE,
            input_example=input_example(),
            code_paths=[str(PACKAGE_DIR)],
            pip_requirements=_pip_requirements(),
            metadata=contract.to_dict(),
            registered_model_name=model_name,
        )
    return str(info.registered_model_version)


# ---------------------------------------------------------------------------------------------
# `mlflow models serve`: error bodies without the caller's bytes
# ---------------------------------------------------------------------------------------------

SCORING_SERVER = "mlflow.pyfunc.scoring_server"
_ECHO_PREFIX = "Failed to predict data '"


def _decode_json_without_echo(original: Any, json_input: Any) -> Any:
    """MLflow's ``_decode_json_input`` for a body that is not JSON, minus the body in its error.

    MLflow 3.17 answers ``"Input: \n{json_input}"``: the whole request echoed, and for a 150 MB
    binary body a ~1 GB message (repr, then JSON escaping) that got ``mlflow models serve``
    OOM-killed in 3 GiB (tests/integration/test_memory_limits.py).
    """
    if isinstance(json_input, bytes | bytearray | str):
        try:
            json_input = json.loads(json_input)
        except json.JSONDecodeError as exc:
            raise MlflowException(
                f"the request body ({len(json_input):,} bytes) is not JSON ({exc.msg} at character "
                f'{exc.pos}); send {{"dataframe_split": {{"columns": ["image"], "data": [["<base64>"]]}}}}',
                error_code=BAD_REQUEST,
            ) from None
        except UnicodeDecodeError:
            raise MlflowException(
                f"the request body ({len(json_input):,} bytes) is not UTF-8 JSON", error_code=BAD_REQUEST
            ) from None
    return original(json_input)


def _invocations_without_echo(original: Any, *args: Any, **kwargs: Any) -> Any:
    """MLflow's ``invocations``, with the input's repr cut out of a predict error's message.

    MLflow rewrites the message of any MlflowException raised while predicting to
    ``"Failed to predict data '<repr of the input>'. Error: <message>"`` (and its schema errors
    hold the repr once more). Ours (InvalidImageError) ignore the rewrite; this keeps the text
    after the last ``Error:`` of the others (e.g. "Model is missing inputs ['image']").
    """
    try:
        return original(*args, **kwargs)
    except MlflowException as exc:
        if str(exc.message).startswith(_ECHO_PREFIX):
            exc.message = str(exc.message).rsplit("Error: ", 1)[-1].strip()
        raise


#: MLflow's error codes for our refusals (MLflow has no 413: a request too large is a bad request).
_ADMISSION_CODES = {
    admission.OverloadedError: TEMPORARILY_UNAVAILABLE,
    admission.TooLargeError: BAD_REQUEST,
    admission.DeadlineExceededError: DEADLINE_EXCEEDED,
}


def _admitted(original: Any, data: Any, *args: Any, **kwargs: Any) -> Any:
    """MLflow's ``invocations`` (it parses the body and predicts, in a worker thread) inside this
    process's admission (:mod:`.admission`): refused at once when the server is busy (503) or the
    request too large (400), cancelled at the server's timeout (MLflow has answered 504 by then)."""
    from mlflow.environment_variables import MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT

    timeout = float(MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.get())
    try:
        with admission.for_process().request(len(data or b""), timeout):
            return original(data, *args, **kwargs)
    except admission.AdmissionError as exc:
        raise MlflowException(str(exc), error_code=_ADMISSION_CODES[type(exc)]) from None


def harden_scoring_server() -> None:
    """Bound ``mlflow models serve``'s work and keep the caller's bytes out of its error bodies
    (no-op elsewhere).

    Called when the model loads. Only acts in a process that runs MLflow's scoring server (the
    module is imported before the model is loaded) and only once; it wraps the two functions
    that echo the request, looked up by the server at call time, and runs ``invocations`` inside
    the admission of :mod:`.admission`. If a future MLflow renames them this logs a warning and
    changes nothing.
    """
    server = sys.modules.get(SCORING_SERVER)
    if server is None or getattr(server, "_melanoma_no_echo", False):
        return
    names = ("_decode_json_input", "invocations")
    if not all(callable(getattr(server, name, None)) for name in names):
        logger.warning("%s has no %s: its error bodies may echo request bytes", SCORING_SERVER, names)
        return
    server._decode_json_input = functools.partial(_decode_json_without_echo, server._decode_json_input)
    bounded = functools.partial(_admitted, server.invocations)
    server.invocations = functools.partial(_invocations_without_echo, bounded)
    server._melanoma_no_echo = True


def unwrap(loaded: mlflow.pyfunc.PyFuncModel) -> MelanomaClassifier:
    """The :class:`MelanomaClassifier` inside a loaded pyfunc (its Keras model and contract).

    Grad-CAM needs the Keras graph itself, not the pyfunc's DataFrame interface.
    """
    try:
        inner = loaded.unwrap_python_model()
    except MlflowException as exc:
        raise ConfigError(f"the loaded model is not a python-function model of this project: {exc}") from exc
    if not isinstance(inner, MelanomaClassifier) and not all(
        hasattr(inner, attr) for attr in ("model", "contract")
    ):
        raise ConfigError(
            f"the loaded model wraps {type(inner).__name__}, not "
            "melanoma_mlops.serving.pyfunc.MelanomaClassifier"
        )
    return inner


def keras_model_and_contract(loaded: mlflow.pyfunc.PyFuncModel) -> tuple[keras.Model, ModelContract]:
    """(Keras model, contract) of a loaded melanoma pyfunc."""
    inner = unwrap(loaded)
    return inner.model, inner.contract
