"""tf.data input pipelines built from a manifest, the decoded-image stores, and the one decode/resize.

Training, evaluation, Grad-CAM and the served pyfunc all call :func:`decode_resize`, so the
pixels a model sees in production are computed exactly as in training (no train/serve skew).
Images reach the classifier as float32 RGB in [0, 255]; the classifier applies ResNet50's
preprocessing itself.

Training does not decode images every epoch. Each *unique* image (by sha256, else by URI) is
decoded and resized once into an :class:`ImageStore`, and every manifest row - the oversampled
training manifest repeats rows - is an index into it, so oversampling costs no memory:

* :class:`MemoryStore`: the uint8 images in one array in RAM, for sets whose unique images fit
  :data:`MEMORY_BUDGET_BYTES` (2 GiB: ~14,000 images at 224 px, ~170,000 at 64 px);
* :class:`melanoma_mlops.model.shards.ShardStore`: the same images written once as TFRecord shards
  on disk or S3 and memory-mapped, for data larger than RAM (``--image-cache shards``).

Both answer ``take(rows)``, so an epoch is the same sequence of index batches whichever store
holds the pixels (a seeded shuffle of the manifest's row indices), and training is identical.
Augmentation is not here: it runs on the device, as the first layer of the training model
(:mod:`melanoma_mlops.model.augment`), on uint8 batches (a quarter of float32's bytes to copy).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
import pandas as pd
import tensorflow as tf

from melanoma_mlops import storage

logger = logging.getLogger(__name__)

AUTOTUNE = tf.data.AUTOTUNE
#: Largest decoded training + validation set (unique images, uint8) held in RAM; more streams from
#: shards (``--image-cache auto``).
MEMORY_BUDGET_BYTES = 2 * 1024**3
CACHE_BUDGET_BYTES = MEMORY_BUDGET_BYTES  # the name before issue 14
_DECODE_BATCH = 64


def decode_resize(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """Encoded JPEG/PNG/BMP/GIF bytes -> float32 (image_size, image_size, 3) in [0, 255]."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    return resize(image, image_size)


def resize(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """uint8/float RGB image(s) -> float32 square image(s) in [0, 255] (bilinear, antialiased)."""
    image = tf.image.resize(tf.cast(image, tf.float32), (image_size, image_size), antialias=True)
    return tf.clip_by_value(image, 0.0, 255.0)


def image_bytes(image_size: int) -> int:
    """Bytes of one decoded uint8 image."""
    return image_size * image_size * 3


# ---------------------------------------------------------------------------------- reading
def _read_file(uri: tf.Tensor) -> tf.Tensor:
    return tf.io.read_file(uri)


def _read_any(uri: tf.Tensor) -> tf.Tensor:
    """Reader for URIs tf.io cannot open (s3:// without tensorflow-io, hdf5:// members)."""

    def _read(u: bytes) -> bytes:
        return storage.read_bytes(u.decode())

    data = tf.numpy_function(_read, [uri], tf.string, stateful=False)
    data.set_shape([])
    return data


def reader_for(uris: Sequence[str]):
    """tf.io.read_file for local files, the storage layer for anything else."""
    return _read_any if any(not storage.is_local(u) for u in uris) else _read_file


def decoded(uris: Sequence[str], image_size: int) -> tf.data.Dataset:
    """uint8 (image_size, image_size, 3) images of ``uris`` in order, decoded in parallel."""
    reader = reader_for(uris)
    ds = tf.data.Dataset.from_tensor_slices(list(uris))
    return ds.map(
        lambda u: tf.cast(decode_resize(reader(u), image_size), tf.uint8),
        num_parallel_calls=AUTOTUNE,
        deterministic=True,
    )


def decode_batches(uris: Sequence[str], image_size: int) -> Iterator[np.ndarray]:
    """The decoded uint8 images of ``uris`` in order, in batches (never all at once)."""
    if len(uris):
        for batch in decoded(uris, image_size).batch(_DECODE_BATCH).prefetch(2):
            yield batch.numpy()


# ----------------------------------------------------------------------------------- stores
def keys(manifest: pd.DataFrame) -> list[str]:
    """The identity of each row's image: its sha256 where the manifest has one, else its URI.

    Rows with the same key have the same bytes, hence the same pixels: they share one stored image.
    """
    if "sha256" in manifest.columns:
        sha = manifest["sha256"].fillna("").astype(str)
        if (sha != "").all():
            return sha.tolist()
    return ("uri:" + manifest["image_uri"].astype(str)).tolist()


def unique_images(manifests: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """(key, image_uri) of every distinct image of ``manifests``, first occurrence first."""
    frames = [pd.DataFrame({"key": keys(m), "image_uri": m["image_uri"].astype(str)}) for m in manifests]
    both = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["key", "image_uri"])
    return both.drop_duplicates("key").reset_index(drop=True)


class ImageStore(Protocol):
    """Decoded uint8 images addressed by row: what the training input pipeline reads."""

    image_size: int
    kind: str

    def rows(self, manifest: pd.DataFrame) -> np.ndarray:
        """The store row of each manifest row (int64), raising KeyError for an image it lacks."""

    def take(self, rows: np.ndarray) -> np.ndarray:
        """uint8 images (len(rows), size, size, 3) in the order of ``rows``."""

    def covers(self, manifest: pd.DataFrame) -> bool:
        """Does the store hold every image of ``manifest``?"""


class IndexedImages:
    """Shared behaviour: a key -> row index."""

    image_size: int
    kind = "?"

    def __init__(self, index: dict[str, int], image_size: int) -> None:
        self.index = index
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.index)

    def rows(self, manifest: pd.DataFrame) -> np.ndarray:
        try:
            return np.fromiter((self.index[k] for k in keys(manifest)), np.int64, count=len(manifest))
        except KeyError as exc:
            raise KeyError(f"the {self.kind} image store has no image {exc.args[0]}") from None

    def covers(self, manifest: pd.DataFrame) -> bool:
        return all(k in self.index for k in keys(manifest))

    def add_aliases(self, manifest: pd.DataFrame) -> None:
        """Also find ``manifest``'s images by URI (for callers that only have URIs, e.g. Grad-CAM)."""
        for key, uri in zip(keys(manifest), manifest["image_uri"].astype(str), strict=True):
            if key in self.index:
                self.index.setdefault(f"uri:{uri}", self.index[key])


class MemoryStore(IndexedImages):
    """Every unique image decoded once into one uint8 array in RAM."""

    kind = "memory"

    def __init__(self, images: np.ndarray, index: dict[str, int]) -> None:
        super().__init__(index, int(images.shape[1]) if images.ndim == 4 else 0)
        self.images = images

    @classmethod
    def decode(cls, manifests: Sequence[pd.DataFrame], image_size: int) -> MemoryStore:
        """Decode each distinct image of ``manifests`` once (in parallel, in a fixed order)."""
        unique = unique_images(manifests)
        images = np.empty((len(unique), image_size, image_size, 3), np.uint8)
        start, pos = time.perf_counter(), 0
        for batch in decode_batches(unique["image_uri"].tolist(), image_size):
            images[pos : pos + len(batch)] = batch
            pos += len(batch)
        logger.info(
            "decoded %d unique images at %d px into memory (%.0f MiB) in %.1f s",
            len(unique), image_size, images.nbytes / 2**20, time.perf_counter() - start,
        )  # fmt: skip
        return cls(images, {k: i for i, k in enumerate(unique["key"])})

    def take(self, rows: np.ndarray) -> np.ndarray:
        return self.images[rows]


def fits_in_memory(manifests: Sequence[pd.DataFrame], image_size: int, budget: int | None = None) -> bool:
    """Do the *unique* decoded images of ``manifests`` fit the memory budget?"""
    budget = MEMORY_BUDGET_BYTES if budget is None else budget
    return len(unique_images(manifests)) * image_bytes(image_size) <= budget


# ------------------------------------------------------------------------- the store in use
_active: list[ImageStore] = []


@contextlib.contextmanager
def reading_from(store: ImageStore | None) -> Iterator[None]:
    """Within this block, :func:`make_dataset` reads the images ``store`` holds instead of decoding.

    How evaluation and Grad-CAM read shards without the evaluation layer knowing about stores.
    """
    if store is None:
        yield
        return
    _active.append(store)
    try:
        yield
    finally:
        _active.remove(store)


def active_store(manifest: pd.DataFrame) -> ImageStore | None:
    return next((s for s in reversed(_active) if s.covers(manifest)), None)


# ---------------------------------------------------------------------------------- datasets
def from_store(
    store: ImageStore,
    manifest: pd.DataFrame,
    batch_size: int,
    *,
    training: bool = False,
    seed: int = 0,
    dtype: tf.DType = tf.float32,
) -> tf.data.Dataset:
    """(images, labels) batches read from ``store``; a seeded reshuffle every epoch when ``training``.

    The shuffle acts on row indices (a few bytes each), so it is a true permutation of the whole
    manifest at no memory cost, and the same seed gives the same order.
    """
    rows = store.rows(manifest)
    labels = manifest["label"].astype(np.float32).to_numpy()
    size = store.image_size
    ds = tf.data.Dataset.from_tensor_slices((rows, labels))
    if training:
        ds = ds.shuffle(len(rows), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)

    def take(r: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        images = tf.numpy_function(store.take, [r], tf.uint8, stateful=False)
        images.set_shape([None, size, size, 3])
        return tf.cast(images, dtype), y

    return ds.map(take, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE)


def make_dataset(
    manifest: pd.DataFrame,
    image_size: int,
    batch_size: int,
    training: bool = False,
    seed: int = 0,
    *,
    store: ImageStore | None = None,
    dtype: tf.DType = tf.float32,
) -> tf.data.Dataset:
    """(image, label) batches of a manifest, float32 RGB in [0, 255] unless ``dtype`` says otherwise.

    ``training`` shuffles (seeded, reshuffled each epoch). Images come from ``store`` or the store
    made active by :func:`reading_from`; otherwise training decodes each unique image once into a
    :class:`MemoryStore` when they fit the budget, and evaluation decodes in order as it streams.
    """
    store = store or active_store(manifest)
    if store is None and training and fits_in_memory([manifest], image_size):
        store = MemoryStore.decode([manifest], image_size)
    if store is not None:
        if store.image_size != image_size:
            raise ValueError(f"the image store holds {store.image_size} px images, not {image_size} px")
        return from_store(store, manifest, batch_size, training=training, seed=seed, dtype=dtype)
    if training:
        logger.warning(
            "%d training images at %d px do not fit the %.1f GiB memory budget: decoding every epoch "
            "(use --image-cache shards to decode once)",
            len(manifest), image_size, MEMORY_BUDGET_BYTES / 2**30,
        )  # fmt: skip
    uris = manifest["image_uri"].astype(str).tolist()
    labels = manifest["label"].astype(np.float32).to_numpy()
    reader = reader_for(uris)
    ds = tf.data.Dataset.from_tensor_slices((uris, labels))
    if training:
        ds = ds.shuffle(len(uris), seed=seed, reshuffle_each_iteration=True)

    def load(uri: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.cast(tf.cast(decode_resize(reader(uri), image_size), tf.uint8), dtype), label

    ds = ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(AUTOTUNE)


def load_images(uris: list[str], image_size: int) -> np.ndarray:
    """Decode a list of images into one float32 array (for Grad-CAM and small batches)."""
    if not uris:
        return np.zeros((0, image_size, image_size, 3), np.float32)
    store = next((s for s in reversed(_active) if s.covers(_uri_frame(uris))), None)
    if store is not None:
        return store.take(store.rows(_uri_frame(uris))).astype(np.float32)
    # Through uint8 like the training pipeline, so Grad-CAM sees the pixels the model trained on.
    return np.concatenate(list(decode_batches(uris, image_size))).astype(np.float32)


def _uri_frame(uris: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"image_uri": uris})
