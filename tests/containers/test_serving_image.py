"""The serving image answers the V2 protocol here, in Docker (host network), with the registered
version it was given; bad input gets a 4xx with our message and the server goes on.

The registry is a SQLite store in a folder mounted at the same path (tests/serving_store.py): the
image reads it as it would read the MLflow server of k8s/serving.
"""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request

import numpy as np
import serving_store
from docker_env import ensure_images, run_container, writable_mount
from PIL import Image
from servers import free_port

NAME = serving_store.NAME


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _body(raw: bytes) -> dict:
    data = [base64.b64encode(raw).decode()]
    return {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": data}]}


def test_the_serving_image_answers_v2_with_the_registered_version(tmp_path, tiny_classifier):
    images = ensure_images(tmp_path / "build")
    store = tmp_path / "store"
    uri = serving_store.register_tiny(store, tiny_classifier)
    mount = writable_mount(store)
    port = free_port()
    base = f"http://127.0.0.1:{port}/v2"
    args = ["serve", "--model-uri", f"models:/{NAME}@champion", "--host", "127.0.0.1", "--port", str(port)]
    with run_container(
        images.serving,
        args,
        env={"MLFLOW_TRACKING_URI": uri},
        docker_args=[*mount, "-v", f"{store}:{store}"],
        ready_url=f"{base}/health/ready",
        label="serving",
    ) as container:
        with urllib.request.urlopen(f"{base}/models/{NAME}", timeout=10) as answer:
            assert json.loads(answer.read())["versions"] == ["1"]
        buf = io.BytesIO()
        Image.fromarray(np.full((48, 48, 3), 120, np.uint8)).save(buf, format="JPEG")
        status, body = _post(f"{base}/models/{NAME}/infer", _body(buf.getvalue()))
        assert status == 200, body
        assert (body["model_name"], body["model_version"]) == (NAME, "1")
        assert body["parameters"]["threshold"] == serving_store.THRESHOLD
        outputs = {o["name"]: o["data"] for o in body["outputs"]}
        assert 0.0 <= outputs["probability"][0] <= 1.0 and outputs["label"][0] in (0, 1)
        status, body = _post(f"{base}/models/{NAME}/infer", _body(b"not an image"))
        assert status == 400 and body["error"].startswith("row 0: not a readable image"), body
        assert _post(f"{base}/models/{NAME}/infer", _body(buf.getvalue()))[0] == 200
        assert container.running()
