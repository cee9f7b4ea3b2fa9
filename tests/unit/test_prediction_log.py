"""The prediction log: records for what the pyfunc scores, written off the request path, drops counted."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest
from moto import mock_aws
from PIL import Image

from melanoma_mlops import storage
from melanoma_mlops.errors import ConfigError
from melanoma_mlops.serving import log_sink, prediction_log, pyfunc
from melanoma_mlops.serving.contract import ModelContract
from melanoma_mlops.serving.image_stats import STAT_COLUMNS
from melanoma_mlops.serving.log_records import ModelIdentity

SINCE = datetime.now(UTC) - timedelta(hours=1)


def png(value: int, size: int = 40) -> bytes:
    rng = np.random.default_rng(value)
    pixels = np.clip(rng.normal(value, 20, (size, size + 4, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def log_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A process that serves predictions as ``test``, logging into ``tmp_path/log``."""
    where = tmp_path / "log"
    monkeypatch.setenv(prediction_log.SOURCE_ENV, "test")
    monkeypatch.setenv(prediction_log.LOG_ENV, str(where))
    for name in (prediction_log.IMAGES_ENV, prediction_log.FORMAT_ENV, prediction_log.QUEUE_ENV):
        monkeypatch.delenv(name, raising=False)
    prediction_log.reset()
    yield where
    prediction_log.reset()


@pytest.fixture(scope="module")
def classifier(tiny_classifier: Any) -> pyfunc.MelanomaClassifier:
    clf = pyfunc.MelanomaClassifier()
    clf.model = tiny_classifier
    clf.contract = ModelContract(image_size=32, threshold=0.5)
    clf.identity = ModelIdentity("melanoma-test", "3", "m-123")
    return clf


def test_every_scored_image_gets_a_record_without_its_pixels(classifier: Any, log_env: Path) -> None:
    images = [png(60), png(200)]
    answer = classifier.predict(None, pd.DataFrame({"image": images}))
    prediction_log.flush_active()
    records = log_sink.read_records(str(log_env), SINCE)
    assert list(records["image_sha256"]) == [hashlib.sha256(b).hexdigest() for b in images]
    assert list(records["probability"]) == pytest.approx(list(answer["probability"]))
    assert list(records["label"]) == list(answer["label"])
    assert set(records["model_version"]) == {"3"} and set(records["source"]) == {"test"}
    assert records["request_id"].nunique() == 2
    assert set(STAT_COLUMNS) <= set(records.columns)
    assert list(records["width"]) == [44, 44] and list(records["height"]) == [40, 40]
    # The darker image is darker: the statistics describe the pixels the model saw.
    assert records["brightness"][0] < records["brightness"][1]
    assert log_sink.IMAGE_COLUMN not in records.columns
    assert not list((log_env).rglob("*.tmp"))


def test_images_are_logged_only_when_turned_on(
    classifier: Any, log_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(prediction_log.IMAGES_ENV, "on")
    monkeypatch.setenv(prediction_log.FORMAT_ENV, "jsonl")
    image = png(90)
    classifier.predict(None, pd.DataFrame({"image": [image]}))
    prediction_log.flush_active()
    (batch,) = list(log_env.rglob("*.jsonl"))
    record = json.loads(batch.read_text())
    import base64

    assert base64.b64decode(record[log_sink.IMAGE_COLUMN]) == image


def test_library_use_logs_nothing(classifier: Any, log_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate re-scoring a test set, MLflow checking the input example: not served predictions."""
    monkeypatch.delenv(prediction_log.SOURCE_ENV)
    classifier.predict(None, pd.DataFrame({"image": [png(1)]}))
    assert prediction_log.active() is None and not log_env.exists()


def test_a_bad_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch, log_env: Path) -> None:
    monkeypatch.setenv(prediction_log.FORMAT_ENV, "csv")
    with pytest.raises(ConfigError, match="MELANOMA_PREDICTION_LOG_FORMAT='csv'"):
        prediction_log.active()
    monkeypatch.setenv(prediction_log.FORMAT_ENV, "parquet")
    monkeypatch.setenv(prediction_log.QUEUE_ENV, "-3")
    with pytest.raises(ConfigError, match="MELANOMA_PREDICTION_LOG_QUEUE='-3' must be positive"):
        prediction_log.active()


class StuckSink:
    """A store that does not answer until released: the writer thread hangs in its first write."""

    drops_uri = "memory://drops"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.written: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}

    def write_records(self, records: list[dict[str, Any]], include_images: bool) -> str:
        self.release.wait(30)
        self.written += records
        return "memory://batch"

    def write_counts(self, counts: dict[str, int]) -> None:
        self.counts = counts


def test_a_full_queue_drops_and_counts_but_never_blocks() -> None:
    settings = prediction_log.LogSettings(queue_size=3, batch_size=1, flush_s=0.05)
    sink = StuckSink()
    log = prediction_log.PredictionLog(settings, sink=sink)
    try:
        # The writer takes the first record and hangs writing it; 3 more fill the queue; 6 are dropped.
        log.submit([{"n": 0}])
        while log._queue.qsize():
            threading.Event().wait(0.01)
        dropped = log.submit({"n": i} for i in range(1, 10))
        assert dropped == 6 and log.counts()["dropped"] == 6
    finally:
        sink.release.set()
        log.close()
    assert [r["n"] for r in sink.written] == [0, 1, 2, 3]
    assert sink.counts == {"dropped": 6, "written": 4, "failed": 0, "unembedded": 0}


class BrokenSink(StuckSink):
    def write_records(self, records: list[dict[str, Any]], include_images: bool) -> str:
        raise OSError("No space left on device")


def test_a_store_that_fails_fails_no_request(classifier: Any, log_env: Path) -> None:
    log = prediction_log.active()
    assert log is not None
    log.sink = BrokenSink()
    answer = classifier.predict(None, pd.DataFrame({"image": [png(5), png(6)]}))
    assert len(answer) == 2
    assert log.flush(10)
    assert log.counts()["failed"] == 2


def test_batches_go_to_an_s3_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for var in (*storage.ENDPOINT_ENV_VARS, "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    storage.reset_clients()
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="melanoma-log")
        sink = log_sink.LogSink("s3://melanoma-log/predictions", "parquet", "w1")
        sink.write_records([{"time": datetime.now(UTC).isoformat(), "probability": 0.25}], False)
        sink.write_counts({"dropped": 2, "written": 1, "failed": 0})
        records = log_sink.read_records("s3://melanoma-log/predictions", SINCE)
        assert list(records["probability"]) == [0.25]
        assert log_sink.read_counts("s3://melanoma-log/predictions")[0]["dropped"] == 2
    storage.reset_clients()
