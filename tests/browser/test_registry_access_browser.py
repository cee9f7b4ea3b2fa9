"""The registry's own buttons cannot bypass the gate (issue 22), in a real browser: a person (READ on
the model) opens the version page of a REAL tracking server with basic-auth, adds ``@champion`` in
its alias editor and saves; the server refuses and the dialog says what to do instead; the alias
stays where it was. Then ``melanoma-mlops promote``, logged in as the promotion identity, moves it
and the same person sees it on reload. Headless Chromium (tests/browser.py), HTTP basic auth; the
server is the session's (conftest ``auth_registry``), shared with
tests/integration/test_registry_access_server.py."""

from __future__ import annotations

import re

import pytest
from auth_server import MODEL, PASSWORDS, as_user
from browser import chromium
from mlflow.tracking import MlflowClient

from melanoma_mlops.tracking_server.ui_app import ALIAS_REFUSED
from melanoma_pipelines import cli

TIMEOUT_MS = 90_000


def test_a_readers_alias_change_on_the_version_page_is_refused_while_promote_works(
    auth_registry: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = auth_registry  # the session's basic-auth server, shared with the integration tier's tests
    with as_user("alice"):
        before = MlflowClient(url).get_registered_model(MODEL).aliases  # those tests may move them
    assert before.get("champion") != "2"
    with chromium() as browser:
        context = browser.new_context(  # type: ignore[attr-defined]
            viewport={"width": 1600, "height": 1000},
            http_credentials={"username": "alice", "password": PASSWORDS["alice"]},
        )
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{url}/#/models/{MODEL}/versions/2")
        page.get_by_text("Version 2", exact=True).first.wait_for()
        page.get_by_role("button", name="Edit aliases").click()
        dialog = page.get_by_role("dialog")
        dialog.locator("input").first.fill("champion")
        page.keyboard.press("Enter")
        with page.expect_response(
            lambda r: r.url.endswith("/registered-models/alias"), timeout=TIMEOUT_MS
        ) as sent:
            dialog.get_by_role("button", name="Save aliases").click()
        assert sent.value.status == 403
        dialog.get_by_text(ALIAS_REFUSED[:60], exact=False).wait_for()  # the why and the what-to-do
        with as_user("alice"):
            assert MlflowClient(url).get_registered_model(MODEL).aliases == before

        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        with as_user("pipeline"):
            assert cli.main(["promote", "--version", "2", "--reason", "reviewed the gate report"]) == 0
        assert f"promoted {MODEL} version 2 to @champion" in capsys.readouterr().out
        page.reload()
        page.get_by_text("Version 2", exact=True).first.wait_for()
        page.get_by_text(re.compile(r"^@\s*champion$")).first.wait_for()  # the alias chip, moved by promote
        context.close()
