"""Decoded images written once as TFRecord shards, for data sets whose images do not fit in RAM.

ISIC 2020 (33k images) or ISIC 2024 (401k) at 224 px are 5 GB and 60 GB of decoded pixels. Instead of
decoding every original JPEG every epoch, the first step that needs an image resizes it once (the
same :func:`~melanoma_mlops.model.dataset.decode_resize` as everywhere) and appends it as a uint8
record to a shard; every later epoch, stage, evaluation and run reads the shards.

Layout, under ``--shard-root`` (a folder or ``s3://`` prefix; default ``~/.cache/melanoma-mlops/shards``)::

    <root>/<data key>-<size>px-v1/part-<id>.json          which images, in which files, in order
    <root>/<data key>-<size>px-v1/part-<id>-00000.tfrecord  the records (<= SHARD_BYTES per file)

The folder is keyed by the data set's fingerprint (the validate step's sha256 of every image and
label) and the image size, so a rerun on the same data - another seed, other hyperparameters - reuses
it. Inside, images are addressed by content (sha256): a step writes only the images the folder does
not hold yet, as a new part whose ``.json`` is written last (a part without it does not exist for
readers), so stage1 writes the training and validation images, evaluate adds the test images, and
nothing is written twice. Two writers racing (parallel ablation trials) can only duplicate a part.

Each record is the raw uint8 pixels (no ``tf.train.Example``), so every record has the same length
and record *i* of a file starts at a fixed offset: the files are ordinary TFRecord files
(``tf.data.TFRecordDataset`` reads and checks them) *and* can be memory-mapped and read at random.
Random access keeps training identical to the in-memory store (the same seeded permutation of the
whole manifest each epoch, no shuffle buffer) and lets evaluation read in manifest order. The OS
pages the files in and out, so the process never holds the data set.

S3 roots: parts are written locally and uploaded; a reader downloads the parts it needs into a
temporary folder first (TensorFlow has no S3 file system without tensorflow-io), so the node needs
the disk, not the RAM.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from melanoma_mlops import disk_space, storage
from melanoma_mlops.artifacts import DEFAULT_SHARD_ROOT
from melanoma_mlops.model import dataset

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
#: TFRecord framing: uint64 length + uint32 masked CRC32C of it before the data, CRC32C after it.
RECORD_HEADER = 12
RECORD_FOOTER = 4
#: Target size of one shard file.
SHARD_BYTES = 128 * 1024**2
DEFAULT_ROOT = DEFAULT_SHARD_ROOT


def default_root() -> str:
    return str(Path(DEFAULT_ROOT).expanduser())


def store_uri(root: str, data_key: str, image_size: int) -> str:
    """The folder of one data set at one image size."""
    root = root or default_root()
    return storage.join(root, f"{data_key[:16]}-{image_size}px-v{FORMAT_VERSION}")


def record_stride(image_size: int) -> int:
    return RECORD_HEADER + dataset.image_bytes(image_size) + RECORD_FOOTER


class ShardStore(dataset.IndexedImages):
    """The parts of one store folder, memory-mapped; ``take(rows)`` like the in-memory store."""

    kind = "shards"

    def __init__(
        self, uri: str, image_size: int, files: list[Path], counts: list[int], index: dict[str, int]
    ):
        super().__init__(index, image_size)
        self.uri = uri
        self.files = files
        self.offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        stride = record_stride(image_size)
        self._views = []
        for path, n in zip(files, counts, strict=True):
            if path.stat().st_size != n * stride:
                raise ValueError(f"{path} holds {path.stat().st_size} bytes, not {n} records of {stride}")
            raw = (
                np.memmap(path, np.uint8, mode="r", shape=(n, stride))
                if n
                else np.zeros((0, stride), np.uint8)
            )
            # (records, pixel bytes): each row is one contiguous block, so a gather copies whole images.
            self._views.append(raw[:, RECORD_HEADER : RECORD_HEADER + dataset.image_bytes(image_size)])

    @property
    def nbytes(self) -> int:
        return int(self.offsets[-1]) * record_stride(self.image_size)

    def take(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.int64)
        out = np.empty((len(rows), dataset.image_bytes(self.image_size)), np.uint8)
        which = np.searchsorted(self.offsets, rows, side="right") - 1
        for f in np.unique(which):
            picked = which == f
            out[picked] = self._views[f][rows[picked] - self.offsets[f]]
        return out.reshape(len(rows), self.image_size, self.image_size, 3)


# ------------------------------------------------------------------------------------ reading
def _parts(uri: str) -> list[str]:
    return sorted(u for u in storage.list_files(uri) if storage.name(u).endswith(".json"))


def _local_copy(uri: str, names: list[str]) -> Path:
    """The folder's files as local paths: itself when local, else downloaded to a temporary folder."""
    if not storage.is_s3(uri):
        return Path(uri)
    tmp = Path(tempfile.mkdtemp(prefix="melanoma-shards-"))
    for name in names:
        (tmp / name).write_bytes(storage.read_bytes(storage.join(uri, name)))
    return tmp


def open_store(uri: str, image_size: int) -> ShardStore:
    """The store at ``uri`` as it is now (every complete part)."""
    parts = [json.loads(storage.read_bytes(p)) for p in _parts(uri)] if storage.exists(uri) else []
    index: dict[str, int] = {}
    files: list[str] = []
    counts: list[int] = []
    row = 0
    for part in parts:
        if part["image_size"] != image_size or part["format"] != FORMAT_VERSION:
            continue
        for k in part["keys"]:
            # A key already held (a duplicate part) keeps its first row.
            index.setdefault(k, row)
            row += 1
        files += [f["name"] for f in part["files"]]
        counts += [int(f["records"]) for f in part["files"]]
    folder = _local_copy(uri, files)
    store = ShardStore(uri, image_size, [folder / f for f in files], counts, index)
    if folder != Path(uri):
        weakref.finalize(store, shutil.rmtree, folder, True)
    return store


# ------------------------------------------------------------------------------------ writing
def write_part(uri: str, keys: Sequence[str], uris: Sequence[str], image_size: int) -> int:
    """Decode ``uris`` and append them to the store at ``uri`` as one part; return bytes written."""
    import tensorflow as tf

    ident = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
    stride = record_stride(image_size)
    per_file = max(1, SHARD_BYTES // stride)
    remote = storage.is_s3(uri)
    folder = Path(tempfile.mkdtemp(prefix="melanoma-shards-w-")) if remote else Path(uri)
    # Temporary names unique to this process: two writers of the same part never share a file.
    tmp_suffix = f".{os.getpid()}.tmp"
    folder.mkdir(parents=True, exist_ok=True)
    files: list[dict[str, object]] = []
    writer, path, count = None, None, 0

    def close() -> None:
        if writer is not None:
            writer.close()
            final = path.with_name(path.name.removesuffix(tmp_suffix))
            os.replace(path, final)
            files.append({"name": final.name, "records": count})

    written = 0
    try:
        for batch in dataset.decode_batches(list(uris), image_size):
            for image in batch:
                if writer is None or count == per_file:
                    close()
                    path = folder / f"part-{ident}-{len(files):05d}.tfrecord{tmp_suffix}"
                    writer, count = tf.io.TFRecordWriter(str(path)), 0
                writer.write(image.tobytes())
                count += 1
                written += 1
        close()
        if written != len(keys):
            raise RuntimeError(f"decoded {written} images for {len(keys)} keys")
        _publish_part(uri, folder, ident, files, keys, image_size, tmp_suffix)
    except BaseException:
        # A failed part (a full disk) leaves none of its files: without its .json they are never
        # read, but they would keep the disk full.
        _remove_part(uri, folder, ident, files, path if writer is not None else None)
        raise
    if remote:
        shutil.rmtree(folder, ignore_errors=True)
    return written * stride


def _publish_part(
    uri: str,
    folder: Path,
    ident: str,
    files: list[dict[str, object]],
    keys: Sequence[str],
    image_size: int,
    tmp_suffix: str,
) -> None:
    """The part's files where readers find them, its .json last (the part exists from then on)."""
    part = {"format": FORMAT_VERSION, "image_size": image_size, "files": files, "keys": list(keys)}
    meta = json.dumps(part).encode()
    if storage.is_s3(uri):
        for f in files:
            storage.write_bytes(storage.join(uri, str(f["name"])), (folder / str(f["name"])).read_bytes())
        storage.write_bytes(storage.join(uri, f"part-{ident}.json"), meta)
    else:
        tmp = folder / f"part-{ident}.json{tmp_suffix}"
        with disk_space.removing_on_failure(tmp):
            tmp.write_bytes(meta)
        os.replace(tmp, folder / f"part-{ident}.json")


def _remove_part(
    uri: str, folder: Path, ident: str, files: list[dict[str, object]], current: Path | None
) -> None:
    """Delete what a failed :func:`write_part` wrote (local files; uploaded S3 objects, best effort)."""
    logger.warning("removing the partial shard files of part %s in %s", ident, uri)
    if current is not None:
        disk_space.remove(current)
    for f in files:
        disk_space.remove(folder / str(f["name"]))
    if storage.is_s3(uri):
        shutil.rmtree(folder, ignore_errors=True)
        for f in files:
            with contextlib.suppress(Exception):
                storage.delete(storage.join(uri, str(f["name"])))


def ensure(
    manifests: Sequence[pd.DataFrame], image_size: int, *, root: str = "", data_key: str = ""
) -> ShardStore:
    """The store holding every image of ``manifests``: written where missing, then opened.

    ``data_key``: the data set's fingerprint (default: the fingerprint of ``manifests``' images).
    """
    unique = dataset.unique_images(manifests)
    key = data_key or hashlib.sha256("\n".join(sorted(unique["key"])).encode()).hexdigest()
    uri = store_uri(root, key, image_size)
    store = open_store(uri, image_size)
    missing = unique[~unique["key"].isin(store.index.keys())]
    if len(missing):
        disk_space.check([disk_space.Need(uri, len(missing) * record_stride(image_size), "image shards")])
        start = time.perf_counter()
        nbytes = write_part(uri, missing["key"].tolist(), missing["image_uri"].tolist(), image_size)
        logger.info(
            "wrote %d images at %d px to shards in %s (%.0f MiB) in %.1f s",
            len(missing), image_size, uri, nbytes / 2**20, time.perf_counter() - start,
        )  # fmt: skip
        store = open_store(uri, image_size)
    else:
        logger.info("reading %d images at %d px from the shards in %s", len(unique), image_size, uri)
    return store


# ------------------------------------------------------------------- which store a step reads
IMAGE_CACHES = ("auto", "memory", "shards")


def for_training(
    manifests: Sequence[pd.DataFrame],
    image_size: int,
    *,
    image_cache: str = "auto",
    shard_root: str = "",
    data_key: str = "",
) -> dataset.ImageStore:
    """The store a training step reads (its training and validation images, each decoded once).

    ``auto``: in memory when the unique images fit :data:`dataset.MEMORY_BUDGET_BYTES`, else shards.
    """
    if image_cache not in IMAGE_CACHES:
        raise ValueError(f"image_cache {image_cache!r} is not one of {', '.join(IMAGE_CACHES)}")
    if image_cache == "memory" or (image_cache == "auto" and dataset.fits_in_memory(manifests, image_size)):
        return dataset.MemoryStore.decode(manifests, image_size)
    return ensure(manifests, image_size, root=shard_root, data_key=data_key)


def for_reading(
    manifests: Sequence[pd.DataFrame],
    image_size: int,
    *,
    image_cache: str = "auto",
    shard_root: str = "",
    data_key: str = "",
    write: bool = True,
) -> ShardStore | None:
    """The shards an evaluating step reads, or None to decode the originals (one pass, streamed).

    ``shards``: always (adding missing images when ``write``); ``auto``: when training wrote shards for
    this data set and size (its folder exists); ``memory``: never.
    """
    if image_cache == "memory":
        return None
    if image_cache == "auto" and not (
        data_key and storage.exists(store_uri(shard_root, data_key, image_size))
    ):
        return None
    if write:
        return ensure(manifests, image_size, root=shard_root, data_key=data_key)
    store = open_store(store_uri(shard_root, data_key, image_size), image_size) if data_key else None
    return store if store is not None and all(store.covers(m) for m in manifests) else None
