"""What the Streamlit detection app does, without Streamlit: load the champion, vet an upload, explain it.

Kept out of ``app/app.py`` so it is unit-testable and so the page script stays a thin layout.
The prediction goes through the registered pyfunc (the same path as ``mlflow models serve`` and
``melanoma-mlops predict``); Grad-CAM runs on the Keras model inside that pyfunc, on the pixels
the pyfunc itself prepares, so the heatmap explains the very score shown next to it.

Uploads are untrusted input: the size is checked before anything is decoded, the header (format,
dimensions) before any pixel is decoded, so an oversized file or a decompression bomb (a few kB
of PNG declaring gigapixels) is refused with a message instead of exhausting the pod's memory.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from melanoma_mlops import MODEL_NAME, tracking
from melanoma_mlops.artifacts import CHAMPION
from melanoma_mlops.errors import ConfigError, DataError
from melanoma_mlops.serving import inputs

if TYPE_CHECKING:
    import keras
    import mlflow.pyfunc

logger = logging.getLogger(__name__)

DISCLAIMER = (
    "Research prototype - NOT a diagnostic device. The score is a statistical estimate from a "
    "model trained on dermoscopic images; it does not diagnose melanoma or rule it out. Any "
    "concerning lesion needs examination by a qualified clinician."
)
MODEL_URI_ENV = "MELANOMA_MODEL_URI"
MAX_UPLOAD_MB_ENV = "MELANOMA_APP_MAX_UPLOAD_MB"
MAX_PIXELS_ENV = "MELANOMA_APP_MAX_PIXELS"
DEFAULT_MODEL_URI = f"models:/{MODEL_NAME}@{CHAMPION}"
DEFAULT_MAX_UPLOAD_MB = 20.0
#: Formats the uploader offers (what dermatoscopes and phones produce); the model reads them all.
UPLOAD_FORMATS = {"JPEG": ("jpg", "jpeg"), "PNG": ("png",)}
#: Longest side of the image shown on the page; the model always sees its own input size.
DISPLAY_MAX_SIDE = 640
#: Version tags shown as the model's test metrics, in this order, with their labels.
METRIC_TAGS = (
    ("test_auc_roc", "AUC (test)"),
    ("test_sensitivity", "Sensitivity (test)"),
    ("test_specificity", "Specificity (test)"),
    ("test_f1", "F1 (test)"),
    ("test_accuracy", "Accuracy (test)"),
)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not a number") from exc
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be positive")
    return value


@dataclass(frozen=True)
class Settings:
    """The app's configuration, all from the environment (the container's only interface)."""

    model_uri: str = DEFAULT_MODEL_URI
    tracking_uri: str = ""
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    max_pixels: int = inputs.MAX_IMAGE_PIXELS

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            model_uri=os.environ.get(MODEL_URI_ENV) or DEFAULT_MODEL_URI,
            tracking_uri=tracking.tracking_uri(),
            max_upload_mb=_env_float(MAX_UPLOAD_MB_ENV, DEFAULT_MAX_UPLOAD_MB),
            max_pixels=int(_env_float(MAX_PIXELS_ENV, inputs.MAX_IMAGE_PIXELS)),
        )


@dataclass
class Champion:
    """The loaded model and what the page shows about it."""

    model_uri: str
    version: str
    tags: dict[str, str]
    threshold: float
    image_size: int
    pyfunc: mlflow.pyfunc.PyFuncModel = field(repr=False)
    keras_model: keras.Model = field(repr=False)

    def metrics(self) -> list[tuple[str, str]]:
        """(label, value) of the test metrics recorded on the version, in display order."""
        rows = []
        for tag, label in METRIC_TAGS:
            if tag in self.tags:
                try:
                    rows.append((label, f"{float(self.tags[tag]):.3f}"))
                except ValueError:
                    rows.append((label, self.tags[tag]))
        return rows


def load_champion(model_uri: str, tracking_uri: str) -> Champion:
    """Load ``model_uri`` from the registry at ``tracking_uri``; a clear ConfigError if impossible."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    tags: dict[str, str] = {}
    version = ""
    if model_uri.startswith("models:/"):
        ref = model_uri.removeprefix("models:/")
        client = MlflowClient(tracking_uri=tracking_uri)
        try:
            if "@" in ref:
                name, alias = ref.split("@", 1)
                mv = client.get_model_version_by_alias(name, alias)
            else:
                name, number = ref.split("/", 1)
                mv = client.get_model_version(name, number)
        except (MlflowException, ValueError) as exc:
            raise ConfigError(
                f"no model {model_uri} in the registry at {tracking_uri}. Train and promote one first "
                "(melanoma-mlops run, then melanoma-mlops promote), or set MELANOMA_MODEL_URI."
            ) from exc
        version, tags = str(mv.version), dict(mv.tags)
        # Pin the version: the alias may move while the app runs, the loaded weights do not.
        model_uri_pinned = f"models:/{name}/{version}"
    else:
        model_uri_pinned = model_uri
    try:
        loaded = mlflow.pyfunc.load_model(model_uri_pinned)
    except (MlflowException, OSError) as exc:
        raise ConfigError(f"{model_uri} could not be loaded from {tracking_uri}: {exc}") from exc
    from melanoma_mlops.serving.pyfunc import unwrap

    inner = unwrap(loaded)
    logger.info("loaded %s (version %s)", model_uri, version or "-")
    return Champion(
        model_uri=model_uri,
        version=version,
        tags=tags,
        threshold=inner.contract.threshold,
        image_size=inner.contract.image_size,
        pyfunc=loaded,
        keras_model=inner.model,
    )


def check_upload(name: str, data: bytes, settings: Settings) -> bytes:
    """The upload's bytes if it is a JPEG/PNG within the size and pixel limits; DataError otherwise."""
    if len(data) > settings.max_upload_bytes:
        raise DataError(
            f"{name}: {len(data) / 1024 / 1024:.1f} MB is over the {settings.max_upload_mb:g} MB limit; "
            "export a smaller JPEG/PNG"
        )
    try:
        fmt, width, height = inputs.check_encoded(data, name, max_pixels=settings.max_pixels)
    except DataError as exc:
        raise DataError(f"{exc}. Upload a dermoscopic photograph as JPEG or PNG.") from exc
    if fmt not in UPLOAD_FORMATS:
        raise DataError(f"{name}: a {fmt} image; the app accepts JPEG or PNG")
    logger.info("upload %s: %s %dx%d, %d bytes", name, fmt, width, height, len(data))
    return data


def display_image(data: bytes, max_side: int = DISPLAY_MAX_SIDE) -> np.ndarray:
    """The upload as uint8 RGB for the page, at most ``max_side`` pixels on its longest side.

    EXIF orientation is deliberately not applied: the model (tf.io.decode_image) does not apply
    it either, and the heatmap must lie over the pixels the model saw.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # already vetted
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (max_side, max_side))  # JPEG: decode at reduced scale
            rgb = img.convert("RGB")
    rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(rgb)


def format_pair(probability: float, threshold: float) -> tuple[str, str]:
    """(probability, threshold) as percentages with just enough decimals to tell them apart.

    "100.0%" below a threshold of "100.0%" reads as a contradiction; a saturated model or a
    threshold frozen near 0 or 1 needs more digits than the usual one.
    """
    for digits in range(1, 7):
        p, t = f"{probability:.{digits}%}", f"{threshold:.{digits}%}"
        if (p != t) or probability == threshold:
            return p, t
    return f"{probability:.6%}", f"{threshold:.6%}"


@dataclass
class Analysis:
    probability: float
    label: int
    class_name: str
    threshold: float
    image: np.ndarray = field(repr=False)
    overlay: np.ndarray = field(repr=False)
    heatmap: np.ndarray = field(repr=False)

    @property
    def suspicious(self) -> bool:
        return self.label == 1

    @property
    def gradcam_flat(self) -> bool:
        """True when Grad-CAM found no positive evidence anywhere (an all-zero map).

        Happens with barely trained models: the overlay is then a uniform tint, which must not be
        read as "the whole image matters".
        """
        return float(self.heatmap.max()) <= 0.0

    @property
    def probability_text(self) -> str:
        return format_pair(self.probability, self.threshold)[0]

    def decision_text(self) -> str:
        threshold = format_pair(self.probability, self.threshold)[1]
        if self.suspicious:
            return (
                f"At or above the model's operating threshold ({threshold}): flagged as suspicious "
                "for malignancy. Recommend review by a dermatologist."
            )
        return (
            f"Below the model's operating threshold ({threshold}). This does not rule out "
            "melanoma: a changing or concerning lesion still needs clinical review."
        )


def _resize_map(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A [0, 1] heatmap resized bilinearly to (height, width)."""
    img = Image.fromarray(cam.astype(np.float32), mode="F").resize(
        (shape[1], shape[0]), Image.Resampling.BILINEAR
    )
    return np.clip(np.asarray(img), 0.0, 1.0)


def analyse(champion: Champion, data: bytes) -> Analysis:
    """Score one vetted upload and compute its Grad-CAM overlay at display resolution."""
    import pandas as pd

    from melanoma_mlops.evaluation.gradcam import heatmaps, overlay

    frame = pd.DataFrame({inputs.IMAGE_COLUMN: [data]})
    row = champion.pyfunc.predict(frame).iloc[0]
    batch = inputs.images_from_input(frame, champion.image_size)
    # Explain the decision the image got (the malignant logit, or the benign one when benign), as
    # the pipeline's Grad-CAM step does.
    sign = np.array([1.0 if int(row["label"]) == 1 else -1.0], np.float32)
    cam = heatmaps(champion.keras_model, batch, signs=sign)[0]
    image = display_image(data)
    cam_display = _resize_map(cam, image.shape[:2])
    return Analysis(
        probability=float(row["probability"]),
        label=int(row["label"]),
        class_name=str(row["class_name"]),
        threshold=champion.threshold,
        image=image,
        overlay=overlay(image, cam_display),
        heatmap=cam_display,
    )


def model_caption(champion: Champion) -> str:
    """One line about the model: URI, version, threshold and when its gate passed."""
    parts = [champion.model_uri]
    if champion.version:
        parts.append(f"version {champion.version}")
    parts.append(f"decision threshold {champion.threshold:.2%}")
    if champion.tags.get("gate.passed") == "true":
        parts.append("promotion gate passed")
    return " | ".join(parts)


def describe_model(champion: Champion) -> dict[str, Any]:
    """What the sidebar shows, as plain data (also handy for logs and tests)."""
    return {
        "caption": model_caption(champion),
        "metrics": champion.metrics(),
        "data_fingerprint": champion.tags.get("data_fingerprint", "")[:12],
        "synthetic": champion.tags.get("data_synthetic") == "true",
    }
