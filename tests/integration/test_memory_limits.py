"""The attacks of issue 11, inside the pods' memory limits: `mlflow models serve` and the app.

Each server runs in a memory cgroup of its pod's limit (3 GiB for both: k8s/base/app.yaml, and the
serving pod of issue 11) with a real ResNet50 classifier at 224 px (untrained: memory, not
accuracy, is under test), then takes:

* three concurrent requests (uploads) of a 99-megapixel PNG that compresses to ~300 KB;
* three concurrent requests of a PNG just under the pixel limit in force, which are decoded -
  one at a time - and answered;
* a 150 MB raw body (not JSON for the server; a chunked upload for the app).

It must stay up, answer the next ordinary request, never be OOM-killed, and peak below the
limit. The figures are printed (run with ``-s``). Slow: two servers with TensorFlow and ResNet50
on a shared CPU take several minutes; tests/unit/test_serving.py and tests/unit/test_app.py cover the same
mechanisms (limits, one decode at a time, two analyses at once) in seconds.

This module is the `mlflow models serve` half; the app's, in Chromium, is
tests/browser/test_memory_limits_app.py (both use tests/memory_probe.py).
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import attacks
import memory_cgroup
import memory_probe
import pytest
import registry_helpers as rh
from memory_probe import MODEL, POD_LIMIT, START_TIMEOUT_S, report

pytestmark = [pytest.mark.slow, pytest.mark.integration, memory_probe.NEEDS_A_MEMORY_CGROUP]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A registry whose champion is the project's ResNet50 classifier at 224 px."""
    with memory_probe.champion_store(tmp_path_factory.mktemp("memory")) as made:
        yield made


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return memory_probe.attack_images(tmp_path_factory.mktemp("attack-images"))


def _body(path: Path) -> bytes:
    value = base64.b64encode(path.read_bytes()).decode()
    return json.dumps({"dataframe_split": {"columns": ["image"], "data": [[value]]}}).encode()


def test_mlflow_models_serve_survives_the_attacks_in_3_gib(
    store: tuple[Path, str], images: dict[str, Path], tmp_path: Path
) -> None:
    from servers import free_port

    _, uri = store
    port = free_port()
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        *("models", "serve", "-m", f"models:/{MODEL}@champion", "--env-manager", "local"),
        *("-h", "127.0.0.1", "-p", str(port)),
    ]
    env = rh.venv_env({"MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true"})
    lines = []
    with (
        memory_cgroup.memory_cgroup(POD_LIMIT) as group,
        rh.background(
            group.wrap(cmd), tmp_path / "serve.log", env, f"http://127.0.0.1:{port}/ping", START_TIMEOUT_S
        ),
    ):
        url = f"http://127.0.0.1:{port}/invocations"
        assert attacks.post(url, _body(images["ok"]))[0] == 200  # warm: the first predict builds the graph
        baseline = group.current_bytes()
        for name in ("99mp", "45mp"):
            body = _body(images[name])
            with concurrent.futures.ThreadPoolExecutor(3) as pool:
                answers = list(pool.map(lambda b: attacks.post(url, b), [body] * 3))
            statuses = [status for status, _ in answers]
            lines.append(f"3 concurrent {name} PNG ({len(body) / 1e6:.1f} MB request): HTTP {statuses}")
            for status, text in answers:
                if status == 400:
                    message = json.loads(text)["message"]
                    assert message.startswith("row 0: ") and "exceeds the limit" in message, message
                    lines.append(f"  400: {message}")
                else:
                    assert status == 200, text[:500]
        raw = os.urandom(150 * 2**20)
        status, text = attacks.post(url, raw)
        lines.append(f"150 MB raw body: HTTP {status}, {len(text):,} bytes of answer")
        assert status in (400, 413, 415)
        assert attacks.post(url, _body(images["ok"]))[0] == 200, "the server no longer answers"
        report("mlflow models serve", group, baseline, lines)
        assert group.oom_kills() == 0
        assert group.peak_bytes() < POD_LIMIT
