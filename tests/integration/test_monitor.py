"""``melanoma-mlops monitor`` on the tiny run's registered version: its own kind of images -> ok,
another clinic's camera -> drift (exit 1), bad input -> a clear error. Nothing phones home."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from local_store import in_local_store
from mlflow.tracking import MlflowClient
from tiny_run import TinyRun

from melanoma_mlops import MODEL_NAME
from melanoma_mlops.data import demo, demo_clinic
from melanoma_mlops.model.embedding import is_embedding_column
from melanoma_mlops.registry.reference import load_profile
from melanoma_mlops.serving import prediction_log
from melanoma_mlops.serving.log_sink import read_records
from melanoma_pipelines import cli

URI = f"models:/{MODEL_NAME}@challenger"


@pytest.fixture(scope="module")
def store(tiny_run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of the tiny run's store: monitor tags the version, and tiny_run is read-only."""
    work = tmp_path_factory.mktemp("monitor")
    shutil.copytree(tiny_run.work / "mlruns", work / "mlruns")
    with in_local_store(work):
        yield work


def serve(images: list[Path], log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Score ``images`` through the registered pyfunc as a server would, logging into ``log``."""
    monkeypatch.setenv(prediction_log.SOURCE_ENV, "test")
    monkeypatch.setenv(prediction_log.LOG_ENV, str(log))
    prediction_log.reset()
    try:
        mlflow.pyfunc.load_model(URI).predict(pd.DataFrame({"image": [p.read_bytes() for p in images]}))
        prediction_log.flush_active()
    finally:
        prediction_log.reset()


def monitor(log: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = cli.main(["monitor", "--model-uri", URI, "--since", "1h", "--log", str(log), *extra])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def no_phoning_home(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every connection to anything but this machine is refused and recorded."""
    attempts: list[Any] = []
    connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if (
            isinstance(host, str)
            and host not in ("127.0.0.1", "::1", "localhost")
            and self.family != socket.AF_UNIX
        ):
            attempts.append(address)
            raise OSError(f"test: no network ({address})")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    return attempts


def test_monitor_tells_the_same_clinic_from_another(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    no_phoning_home: list[Any],
) -> None:  # fmt: skip
    client = MlflowClient()
    version = client.get_model_version_by_alias(MODEL_NAME, "challenger").version
    # The same generator and camera as the training data (another seed: other lesions).
    same = tmp_path / "same"
    demo.generate(same, n=40, size=64, seed=7, layout="folder")
    serve(sorted(same.glob("*/*.png")), tmp_path / "log-same", monkeypatch)
    code, out, err = monitor(tmp_path / "log-same", capsys)
    assert (code, err) == (0, ""), out
    assert out.startswith(f"{MODEL_NAME} version {version}: OK (40 predictions"), out
    # The compact embedding: in every logged record and in the reference, in the same coordinates,
    # and tested (the projection was fitted at register time on the training split).
    records = read_records(str(tmp_path / "log-same"), datetime.now(UTC) - timedelta(hours=1))
    axes = [c for c in records.columns if is_embedding_column(c)]
    assert len(axes) >= 8 and records[axes].notna().all().all(), list(records.columns)
    assert set(axes) <= set(load_profile(MODEL_NAME, version).columns)
    assert f"of {len(axes)} embedding axes drifted" in out, out
    assert client.get_model_version(MODEL_NAME, version).tags["monitor_status"] == "ok"

    # Clinic 2: a phone dermatoscope (other light, focus, size and compression).
    other, clinic1 = tmp_path / "clinic2", tmp_path / "clinic1"
    demo.generate(clinic1, n=10, size=64, seed=8)  # clinic 2 re-uploads a few of clinic 1's images
    demo_clinic.generate(other, clinic1, n=40, seed=7)
    serve(sorted((other / "images").glob("*")), tmp_path / "log-other", monkeypatch)
    code, out, err = monitor(tmp_path / "log-other", capsys)
    assert code == 1, out + err
    assert ": DRIFT (" in out and "input columns drifted" in out, out
    tags = client.get_model_version(MODEL_NAME, version).tags
    assert tags["monitor_status"] == "drift"
    run = client.get_run(tags["monitor_run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "melanoma-monitoring"  # not Default
    assert run.data.tags["monitor_status"] == "drift" and run.data.metrics["drifted_input_share"] >= 0.5
    assert "drift_report.html" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert run.data.metrics["embedding_axes_tested"] == len(axes)
    register_run = client.get_run(tags["register_run_id"])
    assert int(register_run.data.params["embedding_dims"]) == len(axes)
    assert 0 < register_run.data.metrics["embedding_explained_variance"] <= 1
    assert no_phoning_home == []


def test_bad_input_is_a_clear_error(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = monitor(tmp_path, capsys, "--since", "7 weeks")
    assert code == 2 and err.startswith("error: --since '7 weeks': use a span such as 7d"), err
    code, _, err = monitor(tmp_path / "nowhere", capsys)
    assert code == 2 and "error: no prediction log at" in err, err
    (tmp_path / "empty").mkdir()
    code, _, err = monitor(tmp_path / "empty", capsys)
    assert code == 2 and f"error: no predictions of {MODEL_NAME} version" in err, err
    code = cli.main(["monitor", "--model-uri", f"models:/{MODEL_NAME}/99", "--log", str(tmp_path)])
    assert code == 2 and "no such registered version" in capsys.readouterr().err
