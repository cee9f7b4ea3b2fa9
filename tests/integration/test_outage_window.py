"""MLflow outages up to the window are ridden out (issue 24): MLflow's own HTTP client, pointed at a port
where nothing listens for a few seconds (or a proxy answering 503), waits with backoff and says once
what it waits for; past the window it fails as before; a background thread waits silently.

A tiny HTTP server on 127.0.0.1 stands in for the tracking server (integration: a server in a thread).
"""

from __future__ import annotations

import http.server
import logging
import threading
import time
from collections.abc import Iterator

import pytest
from mlflow.exceptions import MlflowException
from mlflow.utils.rest_utils import MlflowHostCreds, http_request
from servers import free_port

from melanoma_mlops import tracking_client

WAITING = "does not answer"


class _Handler(http.server.BaseHTTPRequestHandler):
    unavailable = 0  # answer 503 this many times first (a proxy while the server restarts)

    def do_GET(self) -> None:
        status = 503 if type(self).unavailable > 0 else 200
        type(self).unavailable -= 1
        body = b"{}"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serve(port: int, after_s: float, unavailable: int = 0) -> tuple[threading.Thread, list]:
    """Start answering on ``port`` after ``after_s`` seconds (nothing listens before)."""
    servers: list[http.server.HTTPServer] = []

    def run() -> None:
        time.sleep(after_s)
        handler = type("Handler", (_Handler,), {"unavailable": unavailable})
        server = http.server.HTTPServer(("127.0.0.1", port), handler)
        servers.append(server)
        server.serve_forever(poll_interval=0.1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, servers


@pytest.fixture
def window(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(tracking_client.OUTAGE_ENV, "30")
    monkeypatch.setattr(tracking_client, "OUTAGE", tracking_client.Outage())
    tracking_client.apply_client_defaults()
    yield


def _get(port: int) -> int:
    creds = MlflowHostCreds(f"http://127.0.0.1:{port}")
    return http_request(creds, "/api/2.0/mlflow/experiments/search", "GET").status_code


def _waiting_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if WAITING in r.getMessage()]


def test_a_server_away_for_a_few_seconds_is_waited_for_with_one_line(
    window: None, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    _, servers = _serve(port, after_s=5)
    caplog.set_level(logging.WARNING, logger="melanoma_mlops.tracking_client")
    start = time.monotonic()
    try:
        assert _get(port) == 200
        assert _get(port) == 200
    finally:
        for server in servers:
            server.shutdown()
    assert time.monotonic() - start >= 5
    (line,) = _waiting_lines(caplog)
    assert line.startswith(f"the MLflow tracking server at http://127.0.0.1:{port} does not answer")
    assert "connection refused" in line and "up to 30 s" in line and tracking_client.OUTAGE_ENV in line


def test_503_from_a_proxy_while_the_server_restarts_is_waited_for(
    window: None, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    _, servers = _serve(port, after_s=0, unavailable=3)
    caplog.set_level(logging.WARNING, logger="melanoma_mlops.tracking_client")
    try:
        time.sleep(0.5)
        assert _get(port) == 200
    finally:
        for server in servers:
            server.shutdown()
    (line,) = _waiting_lines(caplog)
    assert "HTTP 503" in line


def test_past_the_window_the_request_fails_and_says_which_server(
    window: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(tracking_client.OUTAGE_ENV, "4")
    port = free_port()  # nothing ever listens
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(MlflowException) as err:
        _get(port)
    assert 4 <= time.monotonic() - start < 4 + 2 * tracking_client.MAX_BACKOFF_S
    message = tracking_client.unreachable_message(err.value)
    assert message.startswith(
        f"cannot reach the MLflow tracking server at http://127.0.0.1:{port} (waited 4 s"
    )


def test_a_background_thread_waits_silently(window: None, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    _, servers = _serve(port, after_s=3)
    caplog.set_level(logging.WARNING, logger="melanoma_mlops.tracking_client")
    status: list[int] = []
    beat = threading.Thread(target=lambda: status.append(_get(port)))
    try:
        beat.start()
        beat.join(timeout=60)
    finally:
        for server in servers:
            server.shutdown()
    assert status == [200] and _waiting_lines(caplog) == []


def test_the_cli_does_not_wait_the_window_for_a_server_that_never_answered(
    window: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(tracking_client.OUTAGE_ENV, "600")
    tracking_client.OUTAGE.first_contact_s = 3
    port = free_port()
    start = time.monotonic()
    with pytest.raises(MlflowException):
        _get(port)
    assert time.monotonic() - start < 3 + 2 * tracking_client.MAX_BACKOFF_S


def test_bookkeeping_that_does_not_retry_does_not_say_it_waits(
    window: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="melanoma_mlops.tracking_client")
    with tracking_client.quick_fail(), pytest.raises(MlflowException):
        _get(free_port())
    assert _waiting_lines(caplog) == []
