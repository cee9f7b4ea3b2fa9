"""The attacks of issue 11 on the Streamlit app, inside its pod's memory limit, driven in Chromium
(the `mlflow models serve` half and the whole story: tests/integration/test_memory_limits.py; both use
tests/memory_probe.py). Slow; run with ``-s`` for the figures."""

from __future__ import annotations

import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import attacks
import memory_cgroup
import memory_probe
import pytest
import registry_helpers as rh
from browser import chromium
from memory_probe import MODEL, POD_LIMIT, START_TIMEOUT_S, report

pytestmark = [pytest.mark.slow, pytest.mark.integration, memory_probe.NEEDS_A_MEMORY_CGROUP]

K8S_APP_MAX_PIXELS = 25_000_000  # k8s/base/app.yaml
APP = Path(__file__).resolve().parents[2] / "app" / "app.py"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A registry whose champion is the project's ResNet50 classifier at 224 px."""
    with memory_probe.champion_store(tmp_path_factory.mktemp("memory")) as made:
        yield made


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return memory_probe.attack_images(tmp_path_factory.mktemp("attack-images"))


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
        report("streamlit app", group, baseline, lines)
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
