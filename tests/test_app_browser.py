"""The detection app in a real browser: ``streamlit run`` + headless Chromium driven by Playwright.

AppTest (tests/test_app.py) runs the script without a browser; this checks what it cannot: the
page renders in Chromium, the file input accepts a real upload over Streamlit's upload endpoint,
and the probability and the Grad-CAM overlay appear. Chromium comes from the system
(Debian: ``apt-get install chromium``), not from ``playwright install``: nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import registry_helpers as rh

CHROMIUM = Path("/usr/bin/chromium")
APP = Path(__file__).resolve().parents[1] / "app" / "app.py"
MODEL = "browser-test-model"
START_TIMEOUT_S = 120
# First upload: the session loads the model (TensorFlow import + Keras load) before it answers.
ANSWER_TIMEOUT_MS = 180_000
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed (apt-get install chromium)"),
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None, reason="the playwright package is not installed"
    ),
]


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
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def open_page(browser: object, url: str) -> object:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(url)
    page.get_by_text("NOT a diagnostic device").wait_for(timeout=ANSWER_TIMEOUT_MS)
    page.locator('input[type="file"]').wait_for(state="attached", timeout=ANSWER_TIMEOUT_MS)
    return page


def test_upload_shows_probability_and_gradcam(app_url: str, browser: object, tmp_path: Path) -> None:
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


def test_non_image_upload_gets_a_message(app_url: str, browser: object, tmp_path: Path) -> None:
    fake = tmp_path / "notes.png"
    fake.write_text("this is not an image")
    page = open_page(browser, app_url)

    page.locator('input[type="file"]').set_input_files(str(fake))

    page.get_by_text("This file cannot be analysed").wait_for(timeout=ANSWER_TIMEOUT_MS)
    assert page.get_by_text("not a readable image").count() >= 1
    assert page.locator('[data-testid="stMetricValue"]').count() == 0
    page.close()
