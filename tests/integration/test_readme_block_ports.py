"""A documented block that starts a server refuses to run where something already answers on its
port: otherwise the block's readiness check would take that other server for its own and send the
block's requests to it (it happened with a stray server on 8080)."""

from __future__ import annotations

import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from readme_blocks import script


class _Answer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:  # quiet
        pass


def test_a_block_whose_port_is_taken_stops_before_starting_its_server(tmp_path) -> None:
    other = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        port = other.server_address[1]
        code = f"melanoma-mlops serve --model-uri models:/m/1 --port {port} &\necho reached\n"
        result = subprocess.run(
            ["bash", "-c", script(code)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        other.shutdown()
    assert result.returncode != 0
    assert f"something already answers http://127.0.0.1:{port}/v2/health/ready" in result.stderr
    assert "reached" not in result.stdout and not list(tmp_path.glob("server-*.log"))
