"""The prediction log: every prediction a serving process makes, appended off the request path.

A record per scored image (:mod:`.log_records` builds it): request id, time, model name, version
and id, probability, label, threshold, the image's sha256, format, size and statistics, and its
compact embedding; never the image itself unless the operator turns that on. Records go into a
bounded queue; one writer thread per process takes them out and writes them in batches (Parquet
or JSON lines, :mod:`.log_sink`) to a local folder or an S3 prefix. A request never waits for the
log: when the queue is full the record is dropped and counted (``dropped``), a warning says so (at
most once a minute), and the writer keeps a counter file per process beside the records
(``drops/``) that ``melanoma-mlops monitor`` adds up. A write that fails (a full disk, S3 away) is
counted as ``failed`` and logged; the response was sent long before.

Who logs: a process that serves predictions says so with :func:`serve_as` (``predict``, the app,
an endpoint) or the :data:`SOURCE_ENV` variable; the pyfunc does it by itself under
``mlflow models serve``. Library use - the promotion gate re-scoring a test set, MLflow checking
the input example when a version is logged, a notebook - logs nothing unless the variable is set.
Everything else is configured by environment variables (the containers' interface), read once
when the log starts: see :class:`LogSettings`.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from melanoma_mlops.errors import ConfigError

logger = logging.getLogger(__name__)

#: Where the records go: a folder or an s3://bucket/prefix; ``off`` turns the log off.
LOG_ENV = "MELANOMA_PREDICTION_LOG"
#: ``on``: each record also holds the image bytes (base64). Off by default: images are patient data.
IMAGES_ENV = "MELANOMA_PREDICTION_LOG_IMAGES"
FORMAT_ENV = "MELANOMA_PREDICTION_LOG_FORMAT"
QUEUE_ENV = "MELANOMA_PREDICTION_LOG_QUEUE"
BATCH_ENV = "MELANOMA_PREDICTION_LOG_BATCH"
FLUSH_ENV = "MELANOMA_PREDICTION_LOG_FLUSH_S"
#: Set by a serving process (:func:`serve_as`): the source name every record carries.
SOURCE_ENV = "MELANOMA_PREDICTION_SOURCE"

DEFAULT_LOCATION = "prediction_log"
FORMATS = ("parquet", "jsonl")
OFF_VALUES = ("off", "false", "0", "no")
ON_VALUES = ("on", "true", "1", "yes")
#: Seconds between two "records dropped" warnings.
DROP_WARNING_EVERY_S = 60.0


@dataclass(frozen=True)
class LogSettings:
    """The log's configuration (environment variable in brackets, default after it)."""

    location: str = DEFAULT_LOCATION  # MELANOMA_PREDICTION_LOG
    include_images: bool = False  # MELANOMA_PREDICTION_LOG_IMAGES: on | off
    format: str = "parquet"  # MELANOMA_PREDICTION_LOG_FORMAT: parquet | jsonl
    queue_size: int = 10_000  # MELANOMA_PREDICTION_LOG_QUEUE: records waiting at most
    batch_size: int = 500  # MELANOMA_PREDICTION_LOG_BATCH: records per file at most
    flush_s: float = 10.0  # MELANOMA_PREDICTION_LOG_FLUSH_S: a record waits at most this long

    @property
    def enabled(self) -> bool:
        return self.location.lower() not in OFF_VALUES

    @classmethod
    def from_env(cls) -> LogSettings:
        """The settings in force; a bad value is a ConfigError naming the variable."""
        env = os.environ
        images = env.get(IMAGES_ENV, "off").strip().lower()
        if images not in ON_VALUES + OFF_VALUES:
            raise ConfigError(f"{IMAGES_ENV}={env[IMAGES_ENV]!r}: use on or off")
        fmt = env.get(FORMAT_ENV, "parquet").strip().lower()
        if fmt not in FORMATS:
            raise ConfigError(f"{FORMAT_ENV}={env[FORMAT_ENV]!r}: use one of {', '.join(FORMATS)}")
        return cls(
            location=env.get(LOG_ENV, "").strip() or DEFAULT_LOCATION,
            include_images=images in ON_VALUES,
            format=fmt,
            queue_size=int(_positive(QUEUE_ENV, cls.queue_size)),
            batch_size=int(_positive(BATCH_ENV, cls.batch_size)),
            flush_s=_positive(FLUSH_ENV, cls.flush_s),
        )


def _positive(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be positive")
    return value


def serve_as(source: str) -> None:
    """Declare this process a server of predictions named ``source`` (unless one was declared):
    from now on the pyfunc logs what it scores here. Set in the environment, so it also reaches a
    pyfunc loaded from the model's own copy of this package."""
    os.environ.setdefault(SOURCE_ENV, source)


def serving_source() -> str | None:
    """The source this process serves as, or None (library use: nothing is logged)."""
    return os.environ.get(SOURCE_ENV) or None


class PredictionLog:
    """A bounded queue of records and the thread that writes them in batches."""

    def __init__(self, settings: LogSettings, sink: Any = None) -> None:
        from melanoma_mlops.serving.log_sink import LogSink

        self.settings = settings
        self.writer_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.sink = sink or LogSink(settings.location, settings.format, self.writer_id)
        self.dropped = self.written = self.failed = self.unembedded = 0
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=settings.queue_size)
        self._lock = threading.Lock()
        self._last_drop_warning = 0.0
        self._reported_drops = 0
        self._stop = threading.Event()
        self._flush = threading.Event()
        self._flushed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._thread.start()

    # -- the request side: never blocks, never raises
    def submit(self, records: Iterable[dict[str, Any]]) -> int:
        """Queue ``records``; return how many were dropped because the queue was full."""
        dropped = 0
        for record in records:
            try:
                self._queue.put_nowait(record)
            except queue.Full:
                dropped += 1
        if dropped:
            with self._lock:
                self.dropped += dropped
                total, now = self.dropped, time.monotonic()
                warn = now - self._last_drop_warning >= DROP_WARNING_EVERY_S
                if warn:
                    self._last_drop_warning = now
            if warn:
                logger.warning(
                    "prediction log: queue full (%d records): %d record(s) dropped so far by this process; "
                    "responses are unaffected (counted in %s)",
                    self.settings.queue_size,
                    total,
                    self.sink.drops_uri,
                )
        return dropped

    # -- the writer thread
    def _run(self) -> None:
        batch: list[dict[str, Any]] = []
        started = time.monotonic()
        while True:
            with contextlib.suppress(queue.Empty):
                batch.append(self._queue.get(timeout=0.2))
            stopping, flushing = self._stop.is_set(), self._flush.is_set()
            if stopping or flushing:
                batch += self._drain()
            due = time.monotonic() - started >= self.settings.flush_s
            while batch and (len(batch) >= self.settings.batch_size or due or stopping or flushing):
                self._write(batch[: self.settings.batch_size])
                batch = batch[self.settings.batch_size :]
            if due:
                started = time.monotonic()
                self._write_drops()
            if flushing:
                self._write_drops()
                self._flush.clear()
                self._flushed.set()
            if stopping:
                self._write_drops()
                return

    def _drain(self) -> list[dict[str, Any]]:
        items = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def _write(self, batch: list[dict[str, Any]]) -> None:
        try:
            self.sink.write_records(batch, include_images=self.settings.include_images)
        except Exception as exc:  # noqa: BLE001 - botocore, pyarrow...: the writer thread must live on
            self.count_failed(len(batch), exc)
        else:
            with self._lock:
                self.written += len(batch)

    def _write_drops(self) -> None:
        """The counter file, when the drop or failure count changed since it was last written."""
        counts = self.counts()
        missing = counts["dropped"] + counts["failed"] + counts["unembedded"]
        if missing == self._reported_drops:
            return
        try:
            self.sink.write_counts(counts)
        except Exception as exc:  # noqa: BLE001 - the writer thread must live on
            logger.warning("prediction log: the drop counter could not be written: %s", exc)
        else:
            self._reported_drops = missing

    # -- control
    def flush(self, timeout: float = 30.0) -> bool:
        """Write everything queued so far; True when done within ``timeout`` seconds."""
        if not self._thread.is_alive():
            return False
        self._flushed.clear()
        self._flush.set()
        return self._flushed.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued and stop the writer (at process exit)."""
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("prediction log: %d record(s) still queued at exit", self._queue.qsize())

    def count_failed(self, n: int, exc: BaseException) -> None:
        """``n`` records that could not be built or written (``failed`` in the counter file)."""
        with self._lock:
            self.failed += n
        logger.warning("prediction log: %d record(s) not logged: %s: %s", n, type(exc).__name__, exc)

    def count_unembedded(self, n: int, exc: BaseException) -> None:
        """``n`` records logged without their embedding (the projection failed on their chunk)."""
        with self._lock:
            self.unembedded += n
        logger.warning(
            "prediction log: %d record(s) logged without embedding: %s: %s", n, type(exc).__name__, exc
        )

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {
                "dropped": self.dropped,
                "written": self.written,
                "failed": self.failed,
                "unembedded": self.unembedded,
            }


class _Process:
    """This process's log, started on first use (one writer thread per process)."""

    log: PredictionLog | None = None
    lock = threading.Lock()


def active() -> PredictionLog | None:
    """This process's log when it serves predictions and the log is on (started on first use)."""
    if serving_source() is None:
        return None
    if _Process.log is not None:
        return _Process.log
    settings = LogSettings.from_env()
    if not settings.enabled:
        return None
    with _Process.lock:
        if _Process.log is None:
            _Process.log = PredictionLog(settings)
            logger.info(
                "prediction log: %s (%s, images %s)",
                settings.location,
                settings.format,
                "on" if settings.include_images else "off",
            )
            atexit.register(_close_active)
    return _Process.log


def flush_active(timeout: float = 30.0) -> None:
    """Write what this process's log holds (a short-lived command before it prints its answer)."""
    log = _Process.log
    if log is not None and not log.flush(timeout):
        logger.warning("prediction log: not flushed within %g s", timeout)


def _close_active() -> None:
    with _Process.lock:
        log, _Process.log = _Process.log, None
    if log is not None:
        log.close()


def reset() -> None:
    """Flush and stop this process's log (tests; a new configuration takes effect on next use)."""
    _close_active()


def record_scored(
    model: Any,
    threshold: float,
    items: Any,
    pixels: Any,
    probabilities: Any,
    *,
    projection: Any = None,
    features: Any = None,
) -> None:
    """Queue the records of one scored chunk when this process logs (the pyfunc calls this after
    every chunk it scores); with a ``projection``
    (:class:`~melanoma_mlops.model.embedding.EmbeddingProjection`) and the chunk's pooled
    ``features``, each record carries its embedding. Never raises: a record that cannot be built is
    counted as failed, a chunk that cannot be embedded is logged without embedding and counted as
    ``unembedded``, and the response goes out as computed."""
    log = active()
    if log is None or not len(items):
        return
    from melanoma_mlops.serving.log_records import build_records

    embeddings = None
    if projection is not None and features is not None:
        try:
            embeddings = np.asarray(projection.apply(features), np.float64)
            if embeddings.shape[0] != len(items) or not np.isfinite(embeddings).all():
                raise ValueError(
                    f"embeddings of shape {embeddings.shape} for {len(items)} images, or not finite"
                )
        except Exception as exc:  # noqa: BLE001 - a response is never failed for the log's sake
            embeddings = None
            log.count_unembedded(len(items), exc)
    try:
        records = build_records(
            source=serving_source() or "",
            model=model,
            items=items,
            pixels=pixels,
            probabilities=probabilities,
            threshold=threshold,
            keep_images=log.settings.include_images,
            embeddings=embeddings,
        )
    except Exception as exc:  # noqa: BLE001 - the log must never fail a response; counted and logged
        log.count_failed(len(items), exc)
        return
    log.submit(records)
