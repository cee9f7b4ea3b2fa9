"""HTTP requests an attacker (or a careless client) sends, shared by the app and serving probes.

tests/ has no ``__init__.py``, so test modules import this as ``import attacks``.
"""

from __future__ import annotations

import contextlib
import http.client
import urllib.parse


def put(
    url: urllib.parse.SplitResult, path: str, headers: dict[str, str], body: bytes | None, chunked: int = 0
) -> int | None:
    """PUT a multipart upload: ``body`` as given, or ``chunked`` bytes of one file part streamed in
    1 MiB chunks without a Content-Length. The status, or None when the server hung up mid-body.
    """
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    try:
        conn.putrequest("PUT", path)
        for key, value in headers.items():
            conn.putheader(key, value)
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        block = b"\0" * 2**20
        part = (
            b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n"
        )
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            if chunked:
                conn.send(b"%x\r\n%s\r\n" % (len(part), part))
            for _ in range(chunked // len(block)):
                conn.send(b"%x\r\n%s\r\n" % (len(block), block))
            if chunked:
                conn.send(b"0\r\n\r\n")
        try:
            return conn.getresponse().status
        except (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError):
            return None
    finally:
        conn.close()


def post(
    url: str, body: bytes, content_type: str = "application/json", timeout: float = 600
) -> tuple[int, bytes]:
    """POST ``body``; (status, response body), whatever the status."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("POST", parts.path, body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()
