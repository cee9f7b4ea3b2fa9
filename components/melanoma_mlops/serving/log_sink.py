"""Where the prediction log's records live, and how they are read back: one declaration of the layout.

::

    <location>/date=2026-05-04/20260504T101502.123456Z-<host>-<pid>-<id>-000001.parquet   a batch
    <location>/drops/<host>-<pid>-<id>.json                                                 a counter

``<location>`` is a local folder or an ``s3://bucket/prefix`` (:mod:`melanoma_mlops.storage`: the
same credentials and endpoint variables as the data). One file per batch, never appended to, so
many processes (replicas, workers) write beside each other without locks; a day's records sit
under their date, so a window of days lists only those days. Local files are written under a
temporary name and renamed, so a reader never sees half a batch (an S3 put is atomic already).
"""

from __future__ import annotations

import base64
import io
import json
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from melanoma_mlops import storage
from melanoma_mlops.errors import DataError

DROPS_FOLDER = "drops"
SUFFIXES = {"parquet": ".parquet", "jsonl": ".jsonl"}
#: A record's key holding the encoded image while it waits in the queue (never written as such).
RAW_KEY = "_image_raw"
IMAGE_COLUMN = "image_b64"


def day_folder(location: str, day: date) -> str:
    return storage.join(location, f"date={day.isoformat()}")


class LogSink:
    """Writes one process's batches and its counter file."""

    def __init__(self, location: str, fmt: str, writer_id: str) -> None:
        self.location = location
        self.format = fmt
        self.writer_id = writer_id
        self._seq = 0

    @property
    def drops_uri(self) -> str:
        return storage.join(self.location, DROPS_FOLDER, f"{self.writer_id}.json")

    def write_records(self, records: list[dict[str, Any]], include_images: bool) -> str:
        """One batch file; returns its URI."""
        rows = []
        for record in records:
            row = {k: v for k, v in record.items() if k != RAW_KEY}
            if include_images:
                raw = record.get(RAW_KEY)
                row[IMAGE_COLUMN] = base64.b64encode(raw).decode("ascii") if raw else None
            rows.append(row)
        now = datetime.now(UTC)
        self._seq += 1
        name = f"{now:%Y%m%dT%H%M%S.%fZ}-{self.writer_id}-{self._seq:06d}{SUFFIXES[self.format]}"
        uri = storage.join(day_folder(self.location, now.date()), name)
        frame = pd.DataFrame(rows)
        if self.format == "parquet":
            buf = io.BytesIO()
            frame.to_parquet(buf, index=False)
            data = buf.getvalue()
        else:
            data = frame.to_json(orient="records", lines=True).encode()
        _write_atomic(uri, data)
        return uri

    def write_counts(self, counts: dict[str, int]) -> None:
        body = {"writer": self.writer_id, **counts, "updated": datetime.now(UTC).isoformat()}
        _write_atomic(self.drops_uri, json.dumps(body).encode())


def _write_atomic(uri: str, data: bytes) -> None:
    if storage.is_s3(uri):
        storage.write_bytes(uri, data)
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _read_file(uri: str) -> pd.DataFrame:
    raw = storage.read_bytes(uri)
    try:
        if uri.endswith(SUFFIXES["parquet"]):
            return pd.read_parquet(io.BytesIO(raw))
        return pd.read_json(io.BytesIO(raw), lines=True, dtype={"request_id": str, "image_sha256": str})
    except (ValueError, OSError) as exc:
        raise DataError(
            f"{uri}: not a readable prediction-log batch ({exc}); move it out of the log"
        ) from exc


def read_records(location: str, since: datetime, until: datetime | None = None) -> pd.DataFrame:
    """Every record logged at ``location`` from ``since`` up to ``until`` (default: now), oldest
    first, with ``time`` as UTC timestamps. An empty frame when there are none."""
    until = until or datetime.now(UTC)
    if not storage.is_s3(location) and not Path(location).is_dir():
        raise DataError(
            f"no prediction log at {location}: nothing has been logged there (set MELANOMA_PREDICTION_LOG "
            "where the servers write, or pass --log)"
        )
    frames = []
    day = since.date()
    while day <= until.date():
        for uri in storage.list_files(day_folder(location, day)):
            if uri.endswith(tuple(SUFFIXES.values())) and not storage.name(uri).startswith("."):
                frames.append(_read_file(uri))
        day += timedelta(days=1)
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    records = pd.concat(frames, ignore_index=True)
    records["time"] = pd.to_datetime(records["time"], utc=True, format="ISO8601")
    window = (records["time"] >= pd.Timestamp(since)) & (records["time"] <= pd.Timestamp(until))
    return records[window].sort_values("time", kind="stable").reset_index(drop=True)


def read_counts(location: str) -> list[dict[str, Any]]:
    """Every writer's counter file (records dropped by a full queue, batches that failed)."""
    out = []
    for uri in storage.list_files(storage.join(location, DROPS_FOLDER)):
        if uri.endswith(".json") and not storage.name(uri).startswith("."):
            try:
                out.append(json.loads(storage.read_bytes(uri)))
            except json.JSONDecodeError as exc:
                raise DataError(f"{uri}: not a prediction-log counter file ({exc})") from exc
    return out
