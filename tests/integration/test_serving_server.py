"""``mlflow models serve`` answering JSON over HTTP for the champion (split from
tests/unit/test_serving.py: a unit test starts no process)."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import registry_helpers as rh

MODEL = "serving-test-model"
SERVE_TIMEOUT_S = 180  # `mlflow models serve` imports TensorFlow and loads the model first


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[rh.Prepared]:
    root = tmp_path_factory.mktemp("serving")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", "")
        rh.use_store(root)
        yield rh.store_with_champion(root, MODEL)


@pytest.fixture(scope="module")
def png() -> bytes:
    return rh.png_bytes(rh.lesion(np.random.default_rng(3), malignant=True, size=40))


def probability(loaded: mlflow.pyfunc.PyFuncModel, frame: object) -> float:
    return float(loaded.predict(frame)["probability"].iloc[0])


def post(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.integration
def wait_for_records(log: Path, n: int, timeout: float = 30.0) -> pd.DataFrame:
    from datetime import UTC, datetime, timedelta

    from melanoma_mlops.serving.log_sink import read_records

    deadline = time.monotonic() + timeout
    while True:
        records = read_records(str(log), datetime.now(UTC) - timedelta(hours=1)) if log.is_dir() else None
        if (records is not None and len(records) >= n) or time.monotonic() > deadline:
            assert records is not None and len(records) == n, records
            return records
        time.sleep(0.2)


def test_mlflow_models_serve_answers_json_for_the_champion(
    store: rh.Prepared, tmp_path: Path, png: bytes
) -> None:
    from servers import free_port

    port = free_port()
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        "models",
        "serve",
        "-m",
        f"models:/{MODEL}@champion",
        "--env-manager",
        "local",
        "-p",
        str(port),
        "-h",
        "127.0.0.1",
    ]
    log = tmp_path / "prediction_log"
    env = rh.venv_env(
        {
            "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri(),
            "MELANOMA_PREDICTION_LOG": str(log),
            "MELANOMA_PREDICTION_LOG_FLUSH_S": "0.5",
        }
    )
    b64 = base64.b64encode(png).decode()
    expected = probability(
        mlflow.pyfunc.load_model(f"models:/{MODEL}@champion"), pd.DataFrame({"image": [png]})
    )

    with rh.background(
        cmd, tmp_path / "serve.log", env, f"http://127.0.0.1:{port}/ping", SERVE_TIMEOUT_S
    ) as ping:
        url = ping.removesuffix("/ping") + "/invocations"
        bodies = {
            "dataframe_split": {"dataframe_split": {"columns": ["image"], "data": [[b64]]}},
            "dataframe_records": {"dataframe_records": [{"image": b64}]},
            "inputs": {"inputs": {"image": [b64]}},
        }
        for name, body in bodies.items():
            status, answer = post(url, body)
            assert status == 200, (name, answer)
            (row,) = answer["predictions"]
            assert 0.0 <= row["probability"] <= 1.0, name
            assert row["probability"] == pytest.approx(expected, abs=1e-5), name
            assert row["label"] in (0, 1) and row["class_name"] in ("benign", "malignant"), name

        # Each image scored has its record in the prediction log, written by the server's writer thread.
        records = wait_for_records(log, len(bodies))
        assert set(records["source"]) == {"mlflow-serve"} and set(records["model_version"]) == {"1"}
        assert set(records["image_sha256"]) == {hashlib.sha256(png).hexdigest()}

        status, answer = post(
            url, {"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(b"no").decode()]]}}
        )
        assert status == 400
        assert "row 0: not a readable image" in answer["message"]

        # Error bodies carry no byte of the request (MLflow's own errors included).
        import attacks

        secret = base64.b64encode(b"PATIENT-NAME-" + b"A" * 64).decode()
        for body in (
            json.dumps({"dataframe_split": {"columns": ["image"], "data": [[secret]]}}).encode(),
            json.dumps({"dataframe_split": {"columns": ["photo"], "data": [[secret]]}}).encode(),
            b"PATIENT-NAME-" + bytes(range(256)) * 64,
        ):
            status, text = attacks.post(url, body)
            assert status == 400 and b"PATIENT" not in text and secret[:16].encode() not in text, text[:300]
