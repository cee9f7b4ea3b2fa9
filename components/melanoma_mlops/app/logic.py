"""What the Streamlit detection app does, without Streamlit: vet an upload, score it, explain it.

Kept out of ``app/app.py`` so it is unit-testable and so the page script stays a thin layout.
The prediction goes through the registered pyfunc (the same path as ``mlflow models serve`` and
``melanoma-mlops predict``); Grad-CAM runs on the Keras model inside that pyfunc, on the pixels
the pyfunc itself prepares, so the heatmap explains the very score shown next to it.

Uploads are untrusted input: the size is checked before anything is decoded, the header (format,
dimensions) before any pixel is decoded, so an oversized file or a decompression bomb (a few kB
of PNG declaring gigapixels) is refused with a message instead of exhausting the pod's memory.
Every refusal names the same formats and limits (:func:`limits_text`). Streamlit's own upload
limit (``server.maxUploadSize``) is set from the same number by ``app/app.py``, so a larger request
body is refused by the server before it is read; at most :data:`MAX_CONCURRENT_ANALYSES` analyses
run at once and the pixel limit is derived from the memory the process has
(:func:`melanoma_mlops.serving.memory_budget.decode_budget`). Loading the champion and what the
page says about it live in :mod:`melanoma_mlops.app.champion`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from melanoma_mlops import MODEL_NAME, tracking_client
from melanoma_mlops.app.champion import Champion
from melanoma_mlops.artifacts import CHAMPION
from melanoma_mlops.errors import ConfigError, DataError, MelanomaError
from melanoma_mlops.serving import formats, headers, inputs, memory_budget

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
#: Formats the uploader offers (what dermatoscopes and phones produce); every message names these.
UPLOAD_FORMATS = ("JPEG", "PNG")
#: Analyses (decode + predict + Grad-CAM) running at once; more sessions wait their turn. The k8s
#: memory sizing (k8s/base/app.yaml, tests/k8s/test_k8s.py) assumes at most two.
MAX_CONCURRENT_ANALYSES = 2
#: How long an analysis waits for a free slot before the page says the app is busy.
ANALYSIS_WAIT_S = 120.0
#: Longest side of the image shown on the page; the model always sees its own input size.
DISPLAY_MAX_SIDE = 640
#: What the Grad-CAM colour bar under the overlay means (evaluation.gradcam.colour_scale).
SCALE_CAPTION = (
    "Colour scale of the overlay: blue = no evidence, green/yellow = some, red = the strongest "
    "evidence for this decision in this image (relative to its own maximum, not comparable between images)."
)


def upload_suffixes() -> list[str]:
    """The uploader's file extensions (without dots), from the one table of formats."""
    return [suffix.lstrip(".") for fmt in UPLOAD_FORMATS for suffix in formats.FORMAT_SUFFIXES[fmt]]


@functools.cache
def _warn_once(message: str) -> None:
    """The page script runs on every interaction: say a configuration problem once per process."""
    logger.warning(message)


class BusyError(MelanomaError):
    """Every analysis slot stayed taken for ANALYSIS_WAIT_S."""


_analysis_slots = threading.BoundedSemaphore(MAX_CONCURRENT_ANALYSES)


def _env_float(name: str, default: float | None) -> float | None:
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
    #: Pixels of a full-size decode (PNG) an upload may need; None: what the memory allows
    #: (memory_budget.pixel_limit). Either way never more than memory_budget.MAX_IMAGE_PIXELS.
    max_pixels: int | None = None

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def within_server_limit(self, server_max_upload_mb: float) -> Settings:
        """These settings with the upload limit lowered to Streamlit's ``server.maxUploadSize``.

        Set the server's limit above the app's (app/.streamlit/config.toml: twice) so that a file
        in between reaches the app and gets its message instead of Streamlit's.
        """
        if server_max_upload_mb >= self.max_upload_mb:
            return self
        _warn_once(
            f"{MAX_UPLOAD_MB_ENV}={self.max_upload_mb:g} is above Streamlit's server.maxUploadSize="
            f"{server_max_upload_mb:g} MB: the server's limit applies"
        )
        return dataclasses.replace(self, max_upload_mb=float(server_max_upload_mb))

    def pixel_limit(self) -> int:
        """The pixel limit in force: the configured one, lowered to what the memory allows."""
        derived = memory_budget.pixel_limit()
        return derived if self.max_pixels is None else min(derived, self.max_pixels)

    @classmethod
    def from_env(cls) -> Settings:
        pixels = _env_float(MAX_PIXELS_ENV, None)
        return cls(
            model_uri=os.environ.get(MODEL_URI_ENV) or DEFAULT_MODEL_URI,
            tracking_uri=tracking_client.tracking_uri(),
            max_upload_mb=float(
                _env_float(MAX_UPLOAD_MB_ENV, DEFAULT_MAX_UPLOAD_MB) or DEFAULT_MAX_UPLOAD_MB
            ),
            max_pixels=None if pixels is None else int(pixels),
        )


def formats_label() -> str:
    """``JPEG or PNG``: the upload formats, as every message names them."""
    return formats.formats_text(UPLOAD_FORMATS)


def limits_text(settings: Settings) -> str:
    """The sentence every refusal ends with: the formats (one list) and the limits in force."""
    megapixels = settings.pixel_limit() / 1e6
    return (
        f"The app accepts {formats_label()} images up to {settings.max_upload_mb:g} MB "
        f"and {megapixels:.0f} megapixels (PNG at full size; larger JPEGs are decoded at reduced scale)."
    )


def check_upload(name: str, data: bytes, settings: Settings) -> bytes:
    """The upload's bytes if it is a JPEG/PNG within the size and pixel limits; DataError otherwise.

    Every refusal is one of our sentences (never PIL's) ending with :func:`limits_text`, so a user
    reads the same formats and limits whatever was wrong.
    """
    if len(data) > settings.max_upload_bytes:
        raise DataError(
            f"{name}: {len(data) / 1024 / 1024:.1f} MB is over the {settings.max_upload_mb:g} MB limit. "
            + limits_text(settings)
        )
    try:
        header = headers.read_header(data, name, settings.max_pixels, accepted=UPLOAD_FORMATS)
    except DataError as exc:
        raise DataError(f"{exc}. {limits_text(settings)}") from exc
    logger.info("upload %s: %s %dx%d, %d bytes", name, header.format, header.width, header.height, len(data))
    return data


def display_image(data: bytes, max_side: int = DISPLAY_MAX_SIDE) -> np.ndarray:
    """The upload as uint8 RGB for the page, at most ``max_side`` pixels on its longest side.

    EXIF orientation is deliberately not applied: the model (tf.io.decode_image) does not apply
    it either, and the heatmap must lie over the pixels the model saw.
    """
    with memory_budget.decode_slot(), headers.open_image(data) as img:
        img.draft("RGB", (max_side, max_side))  # JPEG: decode at reduced scale
        img.load()
        rgb = img if img.mode == "RGB" else img.convert("RGB")
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
    #: The overlay's colour bar (uint8 RGB), low evidence on the left: see SCALE_CAPTION.
    scale: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((1, 1, 3), np.uint8))

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

    from melanoma_mlops.evaluation.gradcam import colour_scale, heatmaps, overlay
    from melanoma_mlops.serving.pyfunc import unwrap

    if not _analysis_slots.acquire(timeout=ANALYSIS_WAIT_S):
        raise BusyError(
            f"the app is analysing {MAX_CONCURRENT_ANALYSES} other images and none finished within "
            f"{ANALYSIS_WAIT_S:g} s; try again in a minute"
        )
    try:
        # Decoded once, by the pyfunc's own code path: the probability is the served model's
        # number (pyfunc.predict is scores(images_from_input(...))) and Grad-CAM explains
        # the very pixels it was computed from.
        classifier = unwrap(champion.pyfunc)
        batch = inputs.images_from_input(pd.DataFrame({inputs.IMAGE_COLUMN: [data]}), champion.image_size)
        if hasattr(classifier, "scores"):  # features: what the logged embedding is made of
            probabilities, features = classifier.scores(batch)
            classifier.log_scored([data], batch, probabilities, features)
        else:  # a version registered before embeddings runs its own copy of this package
            probabilities = classifier.probabilities(batch)
            classifier.log_scored([data], batch, probabilities)
        probability = float(probabilities[0])
        label = int(probability >= classifier.threshold)
        # Explain the decision the image got (the malignant logit, or the benign one when benign),
        # as the pipeline's Grad-CAM step does.
        sign = np.array([1.0 if label == 1 else -1.0], np.float32)
        cam = heatmaps(champion.keras_model, batch, signs=sign)[0]
        del batch
        image = display_image(data)
        cam_display = _resize_map(cam, image.shape[:2])
        return Analysis(
            probability=probability,
            label=label,
            class_name=classifier.contract.class_name(label),
            threshold=champion.threshold,
            image=image,
            overlay=overlay(image, cam_display),
            heatmap=cam_display,
            scale=colour_scale(),
        )
    finally:
        _analysis_slots.release()
