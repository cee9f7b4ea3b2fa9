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
on a shared CPU take several minutes; tests/test_serving.py and tests/test_app.py cover the same
mechanisms (limits, one decode at a time, two analyses at once) in seconds.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import attacks
import memory_cgroup
import numpy as np
import pytest
import registry_helpers as rh
from browser import chromium
from PIL import Image

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.skipif(bool(memory_cgroup.available()), reason=memory_cgroup.available() or "-"),
]

GIB = 2**30
POD_LIMIT = 3 * GIB
MODEL = "memory-probe"
SIZE = 224
START_TIMEOUT_S = 300
K8S_APP_MAX_PIXELS = 25_000_000  # k8s/base/app.yaml
APP = Path(__file__).resolve().parents[1] / "app" / "app.py"


def flat_png(path: Path, megapixels: float) -> Path:
    """A square PNG of ``megapixels`` that compresses to almost nothing (a decompression bomb)."""
    side = int((megapixels * 1e6) ** 0.5)
    Image.new("RGB", (side, side), (200, 150, 140)).save(path, compress_level=9)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A registry whose champion is the project's ResNet50 classifier at 224 px."""
    import keras
    from mlflow.tracking import MlflowClient

    from melanoma_mlops import tracking
    from melanoma_mlops.data import manifest
    from melanoma_mlops.evaluation import evaluate
    from melanoma_mlops.model import network
    from melanoma_mlops.steps.register import register_step

    root = tmp_path_factory.mktemp("memory")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", "")
        uri = rh.use_store(root)
        paths = rh.write_dataset(root)
        keras.utils.set_random_seed(0)
        clf = network.build_classifier(SIZE, "none", 0.5)
        model_dir, eval_dir = root / "model", root / "evaluation"
        model_dir.mkdir()
        clf.save(model_dir / rh.MODEL_FILE)
        evaluate.evaluate(
            clf,
            manifest.read(paths["val"]),
            manifest.read(paths["test"]),
            eval_dir,
            image_size=SIZE,
            batch_size=8,
            threshold_rule="sensitivity",
            target_sensitivity=0.9,
            fixed_threshold=0.5,
            seed=0,
            n_boot=20,
        )
        parent = tracking.start_pipeline_run("memory-probe")
        client = MlflowClient()
        for key, value in {"image_size": SIZE, "batch_size": 8, "data": str(root)}.items():
            client.log_param(parent, key, value)
        version = register_step(
            str(model_dir),
            str(eval_dir),
            str(root / "no-gradcam"),
            *(str(paths[s]) for s in ("train", "val", "test")),
            parent_run_id=parent,
            model_name=MODEL,
        )
        client.set_registered_model_alias(MODEL, "champion", version)
        yield root, uri


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("attack-images")
    return {
        "99mp": flat_png(folder / "bomb99.png", 99),
        "45mp": flat_png(folder / "big45.png", 45),
        "24mp": flat_png(folder / "dermatoscope24.png", 24),
        "ok": Path(
            _write(folder / "lesion.png", rh.png_bytes(rh.lesion(np.random.default_rng(0), True, 64)))
        ),
    }


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _body(path: Path) -> bytes:
    value = base64.b64encode(path.read_bytes()).decode()
    return json.dumps({"dataframe_split": {"columns": ["image"], "data": [[value]]}}).encode()


def _report(name: str, group: memory_cgroup.MemoryCgroup, baseline: int, lines: list[str]) -> None:
    print(
        f"\n{name} in a {POD_LIMIT / GIB:.0f} GiB cgroup: idle {baseline / GIB:.2f} GiB, "
        f"peak {group.peak_bytes() / GIB:.2f} GiB, OOM kills {group.oom_kills()}"
    )
    for line in lines:
        print(f"  {line}")


def test_the_memory_limit_is_read_inside_a_2_gib_cgroup() -> None:
    """Issue 24: limits.memory_limit_bytes() read the cgroup tree's root (23.5 GiB on a v1 host)."""
    import subprocess

    code = (
        "from melanoma_mlops import limits; from melanoma_mlops.serving import memory_budget; "
        "print(limits.memory_limit_bytes(), *memory_budget.memory_limit())"
    )
    with memory_cgroup.memory_cgroup(2 * GIB) as group:
        out = subprocess.run(
            group.wrap([sys.executable, "-c", code]), capture_output=True, text=True, check=True, timeout=120
        ).stdout.split(maxsplit=2)
    assert int(out[0]) == int(out[1]) == 2 * GIB
    assert out[2].strip() == "its cgroup memory limit"


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
        _report("mlflow models serve", group, baseline, lines)
        assert group.oom_kills() == 0
        assert group.peak_bytes() < POD_LIMIT


def _jpeg_burst_body(n: int = 30_000, side: int = 49) -> bytes:
    """One JSON request of ``n`` small valid JPEGs (the same noisy one): ~150 MB."""
    import io

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
    import threading
    import time

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
        _report("mlflow models serve (burst)", group, baseline, lines)
        assert group.oom_kills() == 0
        assert group.peak_bytes() < POD_LIMIT
    text = log.read_text(errors="replace")
    if big[0][0] == 504:  # the work behind the 504 stopped, it did not run on
        assert "was cancelled after" in text, text[-3000:]


def test_the_app_survives_the_attacks_in_3_gib(
    store: tuple[Path, str], images: dict[str, Path], tmp_path: Path
) -> None:
    from servers import free_port

    _, uri = store
    port = free_port()
    cmd = [
        sys.executable,
        *("-m", "streamlit", "run", str(APP), "--server.headless", "true", "--server.port", str(port)),
        *("--server.fileWatcherType", "none"),
    ]
    env = rh.venv_env(
        {
            "MLFLOW_TRACKING_URI": uri,
            "MELANOMA_MODEL_URI": f"models:/{MODEL}@champion",
            "MELANOMA_APP_MAX_PIXELS": str(K8S_APP_MAX_PIXELS),
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
    )
    lines = []
    health = f"http://127.0.0.1:{port}/_stcore/health"
    with (
        memory_cgroup.memory_cgroup(POD_LIMIT) as group,
        rh.background(group.wrap(cmd), tmp_path / "app.log", env, health, START_TIMEOUT_S),
        chromium() as browser,
    ):
        url = f"http://127.0.0.1:{port}/"
        first = _page(browser, url)
        first.locator('input[type="file"]').set_input_files(str(images["ok"]))
        first.get_by_text("Estimated probability of malignancy").wait_for(timeout=600_000)
        baseline = group.current_bytes()
        for name, expect in (("99mp", "This file cannot be analysed"), ("24mp", "Estimated probability")):
            pages = [_page(browser, url) for _ in range(3)]
            for page in pages:
                page.locator('input[type="file"]').set_input_files(str(images[name]))
            for page in pages:
                page.get_by_text(expect).first.wait_for(timeout=600_000)
            lines.append(f"3 concurrent {name} PNG uploads: '{expect}' on all 3 pages")
            for page in pages:
                page.close()
        put = _upload_request(_page(browser, url), images["ok"])
        status = attacks.put(put[0], put[1] + "/attack", put[2], None, chunked=150 * 2**20)
        lines.append(f"150 MB chunked upload: HTTP {status}")
        assert status in (413, None)
        again = _page(browser, url)  # still up, still answering
        again.locator('input[type="file"]').set_input_files(str(images["ok"]))
        again.get_by_text("Estimated probability of malignancy").wait_for(timeout=600_000)
        _report("streamlit app", group, baseline, lines)
        assert group.oom_kills() == 0
        assert group.peak_bytes() < POD_LIMIT


def _page(browser: object, url: str) -> object:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(url)
    page.locator('input[type="file"]').wait_for(state="attached", timeout=600_000)
    return page


def _upload_request(page: object, image: Path) -> tuple[urllib.parse.SplitResult, str, dict[str, str]]:
    """(URL, session path, headers) of a real upload of this page's session, for a raw replay."""
    seen: list[object] = []
    page.on("request", lambda r: seen.append(r) if "/_stcore/upload_file/" in r.url else None)  # type: ignore[attr-defined]
    page.locator('input[type="file"]').set_input_files(str(image))  # type: ignore[attr-defined]
    page.get_by_text("Estimated probability of malignancy").wait_for(timeout=600_000)  # type: ignore[attr-defined]
    put = next(r for r in seen if r.method == "PUT")  # type: ignore[attr-defined]
    url = urllib.parse.urlsplit(put.url)  # type: ignore[attr-defined]
    cookies = "; ".join(f"{c['name']}={c['value']}" for c in page.context.cookies())  # type: ignore[attr-defined]
    headers = {"Cookie": cookies, "Content-Type": "multipart/form-data; boundary=x"}
    headers |= {k: v for k, v in put.headers.items() if k.lower() == "x-xsrftoken"}  # type: ignore[attr-defined]
    return url, url.path.rsplit("/", 1)[0], headers
