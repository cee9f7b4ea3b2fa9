"""The detection app in a real browser: ``streamlit run`` + headless Chromium driven by Playwright.

AppTest (tests/unit/test_app.py) runs the script without a browser; this checks what it cannot: the
page renders in Chromium, the file input accepts a real upload over Streamlit's upload endpoint,
the probability and the Grad-CAM overlay appear, refusals (23 MB, a 900-MP bomb) show the app's
own message, there is no Deploy button, the server itself refuses a 150 MB request body, and
without STREAMLIT_SERVER_ADDRESS the app listens on loopback only (app/.streamlit/config.toml).
Chromium comes from the system (Debian: ``apt-get install chromium``), not from
``playwright install``: nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import re
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import attacks
import numpy as np
import pytest
import registry_helpers as rh
from browser import chromium

APP = Path(__file__).resolve().parents[2] / "app" / "app.py"
MODEL = "browser-test-model"
START_TIMEOUT_S = 120
# First upload: the session loads the model (TensorFlow import + Keras load) before it answers.
ANSWER_TIMEOUT_MS = 180_000

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from servers import free_port

    root = tmp_path_factory.mktemp("browser")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", "")
        uri = rh.use_store(root)
        rh.store_with_champion(root, MODEL)
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]
    env = rh.venv_env({"MLFLOW_TRACKING_URI": uri, "MELANOMA_MODEL_URI": f"models:/{MODEL}@champion"})
    health = f"http://127.0.0.1:{port}/_stcore/health"
    with rh.background(cmd, root / "streamlit.log", env, health, START_TIMEOUT_S):
        yield f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as launched:
        yield launched


def open_page(browser: object, url: str) -> object:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(url)
    page.get_by_text("NOT a diagnostic device").wait_for(timeout=ANSWER_TIMEOUT_MS)
    page.locator('input[type="file"]').wait_for(state="attached", timeout=ANSWER_TIMEOUT_MS)
    return page


def test_upload_shows_probability_and_gradcam(browser: object, app_url: str, tmp_path: Path) -> None:
    image = tmp_path / "lesion.png"
    image.write_bytes(rh.png_bytes(rh.lesion(np.random.default_rng(11), malignant=True, size=64)))
    page = open_page(browser, app_url)

    page.locator('input[type="file"]').set_input_files(str(image))

    page.get_by_text("Estimated probability of malignancy").wait_for(timeout=ANSWER_TIMEOUT_MS)
    value = page.locator('[data-testid="stMetricValue"]').first.inner_text()
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)%\s*", value)
    assert match, value
    assert 0.0 <= float(match.group(1)) <= 100.0
    assert page.get_by_text("operating threshold").count() >= 1
    page.get_by_text("Grad-CAM: regions behind").wait_for(timeout=ANSWER_TIMEOUT_MS)
    assert page.locator('[data-testid="stImage"]').count() >= 2
    page.close()


def test_non_image_upload_gets_a_message(browser: object, app_url: str, tmp_path: Path) -> None:
    fake = tmp_path / "notes.png"
    fake.write_text("this is not an image")
    page = open_page(browser, app_url)

    page.locator('input[type="file"]').set_input_files(str(fake))

    page.get_by_text("This file cannot be analysed").wait_for(timeout=ANSWER_TIMEOUT_MS)
    assert page.get_by_text("not a readable image").count() >= 1
    assert page.locator('[data-testid="stMetricValue"]').count() == 0
    page.close()


def test_metrics_show_their_confidence_intervals_and_no_deploy_button(browser: object, app_url: str) -> None:
    page = open_page(browser, app_url)

    page.get_by_text("Test-set performance").wait_for(timeout=ANSWER_TIMEOUT_MS)
    assert page.get_by_text("95% CI").count() >= 1
    # client.toolbarMode = "viewer" (app/.streamlit/config.toml): no Deploy button, no dev menu.
    assert page.locator('[data-testid="stAppDeployButton"]').count() == 0
    assert page.get_by_role("button", name="Deploy").count() == 0
    page.close()


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("big.jpg", lambda: b"\xff\xd8\xff" + bytes(23 * 2**20), "big.jpg: 23.0 MB is over the 20 MB limit."),
        ("bomb.png", lambda: rh.bomb_png(30_000, 30_000), "900,000,000 pixels exceeds the limit"),
    ],
    ids=["23-MB", "900-MP-bomb"],
)
def test_refused_uploads_get_the_apps_own_message(
    browser: object, app_url: str, tmp_path: Path, name: str, make: object, message: str
) -> None:
    upload = tmp_path / name
    upload.write_bytes(make())  # type: ignore[operator]
    page = open_page(browser, app_url)

    page.locator('input[type="file"]').set_input_files(str(upload))

    page.get_by_text("This file cannot be analysed").wait_for(timeout=ANSWER_TIMEOUT_MS)
    assert page.get_by_text(message).count() >= 1
    assert page.get_by_text("The app accepts JPEG or PNG images up to 20 MB").count() >= 1
    assert page.locator('[data-testid="stMetricValue"]').count() == 0
    page.close()


def test_the_server_refuses_a_150_mb_request_body_before_reading_it(
    browser: object, app_url: str, tmp_path: Path
) -> None:
    """A client that skips the browser's size check: Streamlit's server.maxUploadSize stops it."""
    small = tmp_path / "lesion.png"
    small.write_bytes(rh.png_bytes(rh.lesion(np.random.default_rng(2), malignant=False, size=32)))
    page = open_page(browser, app_url)
    uploads: list[object] = []
    page.on("request", lambda r: uploads.append(r) if "/_stcore/upload_file/" in r.url else None)
    page.locator('input[type="file"]').set_input_files(str(small))
    page.get_by_text("Estimated probability of malignancy").wait_for(timeout=ANSWER_TIMEOUT_MS)
    put = next(r for r in uploads if r.method == "PUT")  # type: ignore[attr-defined]
    url = urllib.parse.urlsplit(put.url)  # type: ignore[attr-defined]
    session_path = url.path.rsplit("/", 1)[0]
    cookies = "; ".join(f"{c['name']}={c['value']}" for c in page.context.cookies())
    headers = {"Cookie": cookies, "Content-Type": "multipart/form-data; boundary=x"}
    headers |= {k: v for k, v in put.headers.items() if k.lower() == "x-xsrftoken"}  # type: ignore[attr-defined]
    size = 150 * 2**20

    # Declared size: refused from the header, nothing read.
    status = attacks.put(url, f"{session_path}/declared", headers | {"Content-Length": str(size)}, b"")
    assert status == 413
    # Undeclared (chunked): refused while streaming, once past the cap.
    status = attacks.put(url, f"{session_path}/chunked", headers, None, chunked=size)
    assert status in (413, None)  # None: the server closed the connection mid-body

    page.close()
    page = open_page(browser, app_url)  # the server is still up and serving
    page.close()


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as fh:
            for line in fh.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, port_hex = local.rsplit(":", 1)
                if state == "0A" and int(port_hex, 16) == port:
                    found.add(address)
    return found


def test_without_an_address_the_app_listens_on_loopback_only(tmp_path: Path) -> None:
    from servers import free_port

    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.port",
        str(port),
        "--server.headless",
        "true",
    ]
    env = rh.venv_env({"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    env = {k: v for k, v in env.items() if k != "STREAMLIT_SERVER_ADDRESS"}
    health = f"http://127.0.0.1:{port}/_stcore/health"
    with rh.background(cmd, tmp_path / "streamlit.log", env, health, START_TIMEOUT_S):
        addresses = _listening_addresses(port)
    assert addresses == {"0100007F"}, addresses  # 127.0.0.1, and no IPv6 or wildcard socket
