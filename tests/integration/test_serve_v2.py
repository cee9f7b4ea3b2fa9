"""`melanoma-mlops serve`'s V2 app in process (Starlette's TestClient, no subprocess): it answers the
protocol with the registered version, predicts through the registered pyfunc, and refuses bad input
with a 4xx and our message while it goes on serving.

The model is the untrained 32-px `tiny_classifier`, registered once per module in a store of its
own through the project's `register_pyfunc` (the whole pipeline is not needed to test the server).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pytest
import serving_store
from docker_env import require_tool
from PIL import Image
from readme_blocks import ROOT, blocks, script, section
from servers import free_port
from starlette.testclient import TestClient

from melanoma_mlops.artifacts import CHAMPION
from melanoma_mlops.serving import admission
from melanoma_mlops.serving.v2 import create_app
from melanoma_pipelines import cli
from melanoma_pipelines.cli.serve import load_served_model

NAME, THRESHOLD = serving_store.NAME, serving_store.THRESHOLD
DOC_SECTION = "The V2 inference server, and a version-pinned deploy"


def _png(seed: int, size: int = 40) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _infer_body(*images: str) -> dict:
    return {
        "id": "r1",
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(images)], "data": list(images)}],
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_classifier) -> Path:
    """A folder laid out as the demo's (mlruns/mlflow.db holding NAME version 1 @champion: the tiny
    classifier as the project's pyfunc)."""
    work = tmp_path_factory.mktemp("serve")
    serving_store.register_tiny(work, tiny_classifier)
    return work


@pytest.fixture(scope="module")
def registry(workdir) -> str:
    return f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}"


@pytest.fixture(scope="module")
def served(registry):
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(registry)
    try:
        model = load_served_model(f"models:/{NAME}@{CHAMPION}")
    finally:
        mlflow.set_tracking_uri(previous)
    with TestClient(create_app(model)) as client:
        yield model, client


def test_health_metadata_and_readiness_name_the_registered_version(served):
    model, client = served
    assert model.version == "1" and model.threshold == pytest.approx(THRESHOLD)
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    meta = client.get(f"/v2/models/{NAME}").json()
    assert meta["name"] == NAME and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert client.get(f"/v2/models/{NAME}/ready").json() == {"name": NAME, "ready": True}
    assert client.get(f"/v2/models/{NAME}/versions/1/ready").status_code == 200
    wrong = client.get(f"/v2/models/{NAME}/versions/2")
    assert wrong.status_code == 404 and f"serves {NAME} version 1" in wrong.json()["error"]


def test_infer_answers_what_the_registered_pyfunc_predicts(served):
    model, client = served
    images = [_png(1), _png(2, size=64)]
    answer = client.post(f"/v2/models/{NAME}/infer", json=_infer_body(*map(_b64, images)))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model_name"], body["model_version"], body["id"]) == (NAME, "1", "r1")
    assert body["parameters"]["threshold"] == pytest.approx(THRESHOLD)
    outputs = {o["name"]: o for o in body["outputs"]}
    assert [outputs[n]["datatype"] for n in ("probability", "label", "class_name")] == [
        "FP64",
        "INT64",
        "BYTES",
    ]
    # The same numbers as the pyfunc's own predict on the same bytes.
    import pandas as pd

    expected = model.pyfunc.predict(pd.DataFrame({"image": images}))
    np.testing.assert_allclose(outputs["probability"]["data"], expected["probability"], rtol=1e-5)
    assert outputs["label"]["data"] == [int(p >= THRESHOLD) for p in outputs["probability"]["data"]]
    assert outputs["probability"]["shape"] == [2]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"not json", 400, "is not JSON"),
        ({"inputs": []}, 400, "exactly one input named 'image'"),
        (
            {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1], "data": ["x"]}]},
            400,
            "datatype BYTES",
        ),
        (
            {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": ["x"]}]},
            400,
            "does not match",
        ),
        (_infer_body("%%%not base64%%%"), 400, "row 0: 'image' is text but not valid base64"),
        (_infer_body(_b64(b"GIF89a" + b"\0" * 4)), 400, "row 0"),
        (_infer_body(_b64(_png(3)), _b64(b"plain text, not an image")), 400, "row 1"),
    ],
)
def test_bad_input_gets_a_4xx_with_our_message_and_the_server_goes_on(served, body, status, words):
    _, client = served
    sent = {"content": body} if isinstance(body, bytes) else {"json": body}
    answer = client.post(f"/v2/models/{NAME}/infer", **sent)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]
    assert "Traceback" not in answer.text
    assert client.post(f"/v2/models/{NAME}/infer", json=_infer_body(_b64(_png(4)))).status_code == 200


def test_a_request_beyond_the_memory_budget_is_refused_413(served):
    model, _ = served
    small = admission.Admission(budget_bytes=admission.request_cost(1000, 32))
    app = create_app(model)
    app._admission = small
    with TestClient(app) as client:
        answer = client.post(f"/v2/models/{NAME}/infer", json=_infer_body(_b64(_png(5, size=200))))
    assert answer.status_code == 413 and "send fewer images" in answer.json()["error"]


def test_serve_command_refuses_an_unknown_model_and_a_busy_port(registry, tmp_path, monkeypatch, capsys):
    import socket

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry)
    assert cli.main(["serve", "--model-uri", f"models:/{NAME}@nope", "--port", str(free_port())]) != 0
    assert f"error: models:/{NAME}@nope is not in the registry" in capsys.readouterr().err
    with contextlib.closing(socket.socket()) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli.main(["serve", "--model-uri", f"models:/{NAME}/1", "--port", str(port)]) != 0
    assert f"error: cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert (
        cli.main(["serve", "--model-uri", str(Path(tmp_path) / "missing"), "--port", str(free_port())]) != 0
    )
    assert "error: cannot load" in capsys.readouterr().err


def test_the_documented_block_runs_as_written(workdir, tmp_path):
    """docs/serving.md's V2 section (tests/readme_blocks.py NOT_RUN: it needs a champion; here the
    tiny one, in a folder laid out as the demo's): serve, infer with curl, deploy, kubectl kustomize."""
    require_tool("kubectl", hint="the block renders the deploy with kubectl kustomize")
    ((language, code),) = blocks(section((ROOT / "docs" / "serving.md").read_text(), DOC_SECTION))
    assert language == "bash" and code.count("8080") == 2
    port = free_port()
    (workdir / "demo_data").mkdir(exist_ok=True)
    (workdir / "demo_data" / "ISIC_9000000.jpg").write_bytes(_png(7))  # the format is sniffed, not named
    for name in (".venv", "k8s"):
        if not (workdir / name).exists():
            (workdir / name).symlink_to(ROOT / name)
    # As written but for the port: 8080 may be taken on a shared machine.
    (tmp_path / "block.sh").write_text(
        script(code.replace(":8080/", f":{port}/").replace("--port 8080", f"--port {port}"))
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTEST"))}
    done = subprocess.run(
        ["bash", str(tmp_path / "block.sh")],
        cwd=workdir,
        env={**env, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    answer = json.loads(done.stdout[: done.stdout.index("}]}") + 3])
    assert (answer["model_name"], answer["model_version"]) == (NAME, "1")
    assert "models:/melanoma-resnet50/1" in done.stdout  # the rendered, pinned server arguments
