"""The attacks of issue 11, inside the pods' memory limits: `mlflow models serve` and the app.

Each server runs in a memory cgroup of its pod's limit (3 GiB for both: k8s/base/app.yaml, and the
serving pod of issue 11) with a real ResNet50 classifier at 224 px (untrained: memory, not
accuracy, is under test), then takes:

* three concurrent requests (uploads) of a 99-megapixel PNG that compresses to ~300 KB;
* three concurrent requests of a PNG just under the pixel limit in force, which are decoded -
  one at a time - and answered;
* a 150 MB raw body (not JSON for the server; a chunked upload for the app);
* issue 24's burst (`mlflow models serve`): a 150 MB request of 30,000 small valid JPEGs, then six
  concurrent 99-megapixel requests.

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
import io
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import attacks
import memory_cgroup
import memory_probe
import numpy as np
import pytest
import registry_helpers as rh
from memory_probe import MODEL, POD_LIMIT, START_TIMEOUT_S, report
from PIL import Image

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


def _jpeg_burst_body(n: int = 30_000, side: int = 49) -> bytes:
    """One JSON request of ``n`` small valid JPEGs (the same noisy one): ~150 MB."""
    buf = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buf, format="JPEG", quality=95)
    value = base64.b64encode(buf.getvalue()).decode()
    return json.dumps({"dataframe_split": {"columns": ["image"], "data": [[value]] * n}}).encode()


def test_mlflow_models_serve_bounds_a_burst_in_3_gib(
    store: tuple[Path, str], images: dict[str, Path], tmp_path: Path
) -> None:
    """Issue 24's burst: a 150 MB request of 30,000 small valid JPEGs, then six concurrent 99-MP
    requests. Before: the big request got its 504 after 60 s but went on decoding, the 99-MP
    requests came on top, the server was OOM-killed and stayed dead. Now each request is admitted
    against the memory budget (or refused 503), the big one is cancelled at its deadline, and the
    server answers the next ordinary request."""
    from servers import free_port

    _, uri = store
    port = free_port()
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        *("models", "serve", "-m", f"models:/{MODEL}@champion", "--env-manager", "local"),
        *("-h", "127.0.0.1", "-p", str(port), "--timeout", "60"),
    ]
    env = rh.venv_env({"MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true"})
    burst = _jpeg_burst_body()
    bomb = _body(images["99mp"])
    log = tmp_path / "serve.log"
    lines = [f"burst body {len(burst) / 1e6:.0f} MB"]
    with (
        memory_cgroup.memory_cgroup(POD_LIMIT) as group,
        rh.background(group.wrap(cmd), log, env, f"http://127.0.0.1:{port}/ping", START_TIMEOUT_S),
    ):
        url = f"http://127.0.0.1:{port}/invocations"
        assert attacks.post(url, _body(images["ok"]))[0] == 200
        baseline = group.current_bytes()
        big: list[tuple[int, str]] = []
        sent = time.monotonic()
        thread = threading.Thread(target=lambda: big.append(attacks.post(url, burst)))
        thread.start()
        time.sleep(10)  # the burst is being parsed and vetted
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda b: attacks.post(url, b), [bomb] * 6))
        statuses = [status for status, _ in answers]
        lines.append(f"six concurrent 99-MP requests during it: HTTP {statuses}")
        assert set(statuses) <= {400, 429, 503}, [t[:300] for _, t in answers]
        thread.join(timeout=900)
        lines.append(f"the 150 MB request: HTTP {big[0][0]} after {time.monotonic() - sent:.0f} s")
        assert big and big[0][0] in (400, 413, 429, 503, 504), big[0][1][:300] if big else "no answer"
        ok = time.monotonic()
        assert attacks.post(url, _body(images["ok"]))[0] == 200, "the server no longer answers"
        lines.append(f"the next ordinary request: HTTP 200 after {time.monotonic() - ok:.0f} s")
        if big[0][0] == 504:  # the work behind the 504 stops at its next row or chunk, not at the end
            waited = time.monotonic()
            while "was cancelled after" not in log.read_text(errors="replace"):
                assert time.monotonic() - waited < 300, log.read_text(errors="replace")[-3000:]
                time.sleep(1)
            cancelled = [
                x for x in log.read_text(errors="replace").splitlines() if "was cancelled after" in x
            ]
            lines.append(f"the server's log: {cancelled[0].strip()[:160]}")
        report("mlflow models serve (burst)", group, baseline, lines)
        assert group.oom_kills() == 0
        assert group.peak_bytes() < POD_LIMIT
