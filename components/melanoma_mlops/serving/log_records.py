"""One prediction-log record per scored image: what was asked, what the model answered, and what
the image looked like (its statistics), never the image unless the operator asks.

Columns (docs/monitoring.md): ``request_id``, ``time`` (UTC, ISO 8601), ``source`` (predict, app,
mlflow-serve, endpoint, ...), ``model_name``, ``model_version``, ``model_id``, ``probability``,
``label``, ``threshold``, ``image_sha256``, ``image_format``, the statistics of
:data:`~melanoma_mlops.serving.image_stats.STAT_COLUMNS` and, for a version with an embedding
projection, the compact embedding ``emb_00``... (:mod:`melanoma_mlops.model.embedding`).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from melanoma_mlops.model.embedding import embedding_columns
from melanoma_mlops.serving.formats import sniff_format
from melanoma_mlops.serving.headers import open_header
from melanoma_mlops.serving.image_stats import image_statistics
from melanoma_mlops.serving.log_sink import RAW_KEY

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelIdentity:
    """Which model answered: the registered name and version (``registered_model_meta``, which
    MLflow before 3.x wrote beside a version it downloads, else asked of the registry by the model
    id: :func:`registered_as`) and MLflow's model id (in every logged model)."""

    name: str = ""
    version: str = ""
    model_id: str = ""

    @classmethod
    def of_model_dir(cls, model_dir: Path) -> ModelIdentity:
        """Read from a loaded model's folder; empty fields for what it does not say (a model
        loaded from a run, not the registry, has no name or version)."""
        import yaml

        def _yaml(name: str) -> dict[str, Any]:
            try:
                data = yaml.safe_load((model_dir / name).read_text())
            except (OSError, yaml.YAMLError):
                return {}
            return data if isinstance(data, dict) else {}

        meta, mlmodel = _yaml("registered_model_meta"), _yaml("MLmodel")
        name, version = str(meta.get("model_name") or ""), str(meta.get("model_version") or "")
        model_id = str(mlmodel.get("model_id") or "")
        if not name and model_id:
            name, version = registered_as(model_id)
        return cls(name, version, model_id)


def registered_as(model_id: str) -> tuple[str, str]:
    """The registered (name, version) of a logged model, asked of the registry once at load time:
    MLflow 3.18 no longer writes ``registered_model_meta`` beside a downloaded version, and without
    a name and version no record could be told apart by ``monitor`` or ``outcomes``. Empty when the
    model is not registered, registered more than once, or the registry cannot be asked (loading
    never fails for the log's sake)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient, is_tracking_uri_set

    if not is_tracking_uri_set():  # a model loaded from a folder: no registry to ask (and none made)
        return "", ""
    try:
        found = MlflowClient().search_model_versions(f"source_path = 'models:/{model_id}'")
    except (MlflowException, OSError) as exc:
        logger.warning("prediction log: no registered name for model %s (%s)", model_id, exc)
        return "", ""
    if len(found) != 1:
        return "", ""
    return str(found[0].name), str(found[0].version)


@dataclass(frozen=True)
class ImageInfo:
    """A scored image's identity (sha256 of the encoded bytes, or of an array's pixels), format and
    original size; ``raw`` (the bytes) is kept only until the writer decides whether to store it."""

    sha256: str
    format: str
    width: int
    height: int
    raw: bytes | None = None


def image_info(item: bytes | np.ndarray) -> ImageInfo:
    """:class:`ImageInfo` of one vetted row (:func:`~melanoma_mlops.serving.inputs.vetted`)."""
    if isinstance(item, np.ndarray):
        arr = np.ascontiguousarray(item)
        return ImageInfo(hashlib.sha256(arr.tobytes()).hexdigest(), "array", arr.shape[1], arr.shape[0])
    fmt = sniff_format(item) or "unknown"
    width, height = open_header(item, fmt).size if fmt != "unknown" else (0, 0)
    return ImageInfo(hashlib.sha256(item).hexdigest(), fmt, width, height, item)


def build_records(
    *,
    source: str,
    model: ModelIdentity,
    items: Sequence[bytes | np.ndarray],
    pixels: np.ndarray,
    probabilities: np.ndarray,
    threshold: float,
    keep_images: bool = False,
    embeddings: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """The records of one scored chunk: ``items`` are its vetted rows, ``pixels`` the batch the
    network took, ``probabilities`` its answers (the label is ``probability >= threshold``),
    ``embeddings`` (N, dims) their compact embeddings, if any.
    The encoded bytes ride along only when ``keep_images`` (a queue of 10,000 images is gigabytes)."""
    now = datetime.now(UTC).isoformat()
    infos = [image_info(item) for item in items]
    stats = image_statistics(pixels, [(i.width, i.height) for i in infos])
    columns = embedding_columns(embeddings.shape[1]) if embeddings is not None else []
    records = []
    for row, info in enumerate(infos):
        probability = float(probabilities[row])
        record: dict[str, Any] = {
            "request_id": uuid.uuid4().hex,
            "time": now,
            "source": source,
            "model_name": model.name,
            "model_version": model.version,
            "model_id": model.model_id,
            "probability": probability,
            "label": int(probability >= threshold),
            "threshold": float(threshold),
            "image_sha256": info.sha256,
            "image_format": info.format,
            **{name: float(values[row]) for name, values in stats.items()},
            **{name: float(embeddings[row, i]) for i, name in enumerate(columns)},  # type: ignore[index]
        }
        if keep_images and info.raw is not None:
            record[RAW_KEY] = info.raw
        records.append(record)
    return records
