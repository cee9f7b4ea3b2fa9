"""Headless Chromium (Debian's package, no `playwright install` download) driven by Playwright, for
the tests that need a real browser: the app, the MLflow UI, the app image and the memory probe."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path

from docker_env import missing_tool

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    """A launched headless browser, closed afterwards.

    Without Chromium or Playwright the calling test is skipped, or fails under CI (``.ci/run``
    installs both), through :func:`docker_env.missing_tool`.
    """
    if not CHROMIUM.exists():
        missing_tool(f"{CHROMIUM} is not installed (Debian: apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        missing_tool("the playwright Python package is not installed (pip install -e '.[dev]')")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
