"""The model server bounds its work (issue 24): requests admitted against a memory budget (503 when
busy, 413 when too large alone), a deadline that follows a request into worker threads and stops its
work, rows scored a chunk at a time with one chunk in the network per process; the same bounds as
an ASGI middleware for a server of our own. tests/integration/test_memory_limits.py runs the burst
against ``mlflow models serve`` in a 3 GiB cgroup."""

from __future__ import annotations

import asyncio
import io
import threading
import time

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from PIL import Image

from melanoma_mlops.serving import admission, pyfunc
from melanoma_mlops.serving.contract import ModelContract

MIB = 2**20


def test_requests_are_admitted_while_they_fit_and_refused_at_once_after() -> None:
    gate = admission.Admission(budget_bytes=100 * MIB, max_requests=3, image_size=32)
    first = gate.admit(10 * MIB, timeout_s=60)  # 35 MiB parsed + one chunk
    second = gate.admit(10 * MIB, timeout_s=60)
    with pytest.raises(admission.OverloadedError) as busy:
        gate.admit(10 * MIB, timeout_s=60)  # a third would not fit beside them
    assert busy.value.status == 503 and busy.value.retry_after == admission.RETRY_AFTER_S
    assert "the server is busy (2 request(s) in progress" in str(busy.value)
    with pytest.raises(admission.TooLargeError) as large:
        gate.admit(40 * MIB, timeout_s=60)  # alone more than the whole budget: never fits
    assert large.value.status == 413 and "send fewer images per request" in str(large.value)
    gate.release(first)
    third = gate.admit(10 * MIB, timeout_s=60)
    small = gate.admit(1000, timeout_s=60)
    with pytest.raises(admission.OverloadedError):
        gate.admit(1000, timeout_s=60)  # at most max_requests at once, whatever their size
    for ticket in (second, third, small):
        gate.release(ticket)
    assert gate.in_use == 0 and gate.active == 0


def test_the_deadline_follows_the_request_into_worker_threads_and_stops_it() -> None:
    gate = admission.Admission(budget_bytes=100 * MIB)
    admission.check_deadline()  # outside a request: nothing to stop
    seen: list[str] = []

    async def request() -> None:
        with gate.request(1000, timeout_s=0.2):
            await asyncio.to_thread(work)

    def work() -> None:  # a scoring server's worker thread
        admission.check_deadline()
        time.sleep(0.3)
        try:
            admission.check_deadline("scoring rows 16-29999")
        except admission.DeadlineExceededError as exc:
            seen.append(str(exc))
            raise

    with pytest.raises(admission.DeadlineExceededError):
        asyncio.run(request())
    assert seen and seen[0].startswith("scoring rows 16-29999 was cancelled after 0 s")
    assert gate.active == 0 and admission.current() is None


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


class _Counting(pyfunc.MelanomaClassifier):
    """The real scoring path around a network that records its batches (and may be slow)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.contract = ModelContract(image_size=32, threshold=0.5)
        self.batches: list[int] = []
        self.in_network = 0
        self.most_in_network = 0
        self.delay_s = delay_s
        self._lock = threading.Lock()

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            self.in_network += 1
            self.most_in_network = max(self.most_in_network, self.in_network)
        time.sleep(self.delay_s)
        self.batches.append(len(batch))
        with self._lock:
            self.in_network -= 1
        return np.full(len(batch), 0.7)


def test_rows_are_scored_a_chunk_at_a_time_one_chunk_in_the_network() -> None:
    model = _Counting(delay_s=0.05)
    frame = pd.DataFrame({"image": [_png(i) for i in range(40)]})
    threads = [threading.Thread(target=model.predict, args=(None, frame)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(model.batches) == sorted([16, 16, 8] * 3)
    assert model.most_in_network == 1
    out = model.predict(None, frame)
    assert len(out) == 40 and (out["label"] == 1).all()


def test_a_request_past_its_deadline_stops_between_chunks() -> None:
    model = _Counting(delay_s=0.3)
    frame = pd.DataFrame({"image": [_png(i) for i in range(64)]})
    gate = admission.Admission(budget_bytes=100 * MIB)
    with pytest.raises(admission.DeadlineExceededError), gate.request(1000, timeout_s=0.5):
        model.predict(None, frame)
    assert 1 <= len(model.batches) <= 3  # not the 4 chunks of the whole request


def test_the_scoring_server_refuses_with_mlflows_status_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    gate = admission.Admission(budget_bytes=100 * MIB, max_requests=1)
    monkeypatch.setattr(admission, "for_process", lambda *a, **k: gate)
    held = gate.admit(1000, 60)
    with pytest.raises(MlflowException) as busy:
        pyfunc._admitted(lambda *a: "scored", b"{}", "application/json", None, None)
    assert busy.value.get_http_status_code() == 503
    gate.release(held)
    with pytest.raises(MlflowException) as large:
        pyfunc._admitted(lambda *a: "scored", b"x" * (40 * MIB), "application/json", None, None)
    assert large.value.get_http_status_code() == 400 and "send fewer images" in large.value.message
    assert pyfunc._admitted(lambda *a: "scored", b"{}", "application/json", None, None) == "scored"
    assert gate.active == 0


# --------------------------------------------------------------------------------------- ASGI
def _call(
    middleware: admission.AdmissionMiddleware, body: bytes, declared: bool = True
) -> tuple[int, dict, bytes]:
    headers = [(b"content-type", b"application/json")]
    if declared:
        headers.append((b"content-length", str(len(body)).encode()))
    scope = {"type": "http", "method": "POST", "path": "/v2/models/m/infer", "headers": headers}
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)] or [b""]
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body_out


def test_the_asgi_middleware_admits_before_reading_the_body_and_sets_the_deadline() -> None:
    gate = admission.Admission(budget_bytes=100 * MIB, max_requests=1, image_size=32)
    deadlines: list[float] = []

    async def app(scope: dict, receive, send) -> None:
        while (await receive()).get("more_body"):
            pass
        deadlines.append(admission.current().deadline)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    middleware = admission.AdmissionMiddleware(app, gate, timeout_s=30)
    assert _call(middleware, b"{}")[0] == 200
    assert deadlines and deadlines[0] > time.monotonic() + 25
    status, headers, body = _call(middleware, b"x" * (40 * MIB))
    assert status == 413 and b"send fewer images" in body and not deadlines[1:]
    held = gate.admit(1000, 60)
    status, headers, _ = _call(middleware, b"{}")
    assert status == 503 and headers[b"retry-after"] == str(admission.RETRY_AFTER_S).encode()
    gate.release(held)
    undeclared = admission.AdmissionMiddleware(app, gate, timeout_s=30)
    undeclared.MAX_UNDECLARED_BYTES = MIB
    assert _call(undeclared, b"y" * (2 * MIB), declared=False)[0] == 413  # longer than admitted
    assert gate.active == 0


def test_a_serving_chunk_is_scored_by_predict_and_a_few_images_one_per_direct_call() -> None:
    """An eager call of ResNet50 holds ~180 MiB per 224-px image (2.8 GiB for 16; predict(): 440 MiB
    for 16): a chunk scored that way got the server OOM-killed in 3 GiB. Only a few images take the
    direct path (no graph tracing), one at a time."""
    from melanoma_mlops.serving.pyfunc import DIRECT_CALL_MAX, MelanomaClassifier

    class Recorder:
        def __init__(self) -> None:
            self.calls: list[tuple[str, int]] = []

        def __call__(self, batch: np.ndarray, training: bool) -> np.ndarray:
            assert training is False
            self.calls.append(("direct", len(batch)))
            return batch[:, :1, 0, 0].astype(np.float32)

        def predict(self, batch: np.ndarray, verbose: int) -> np.ndarray:
            self.calls.append(("predict", len(batch)))
            return batch[:, :1, 0, 0].astype(np.float32)

    classifier = MelanomaClassifier.__new__(MelanomaClassifier)
    classifier.model = Recorder()
    pixels = np.random.default_rng(0).random((admission.CHUNK_ROWS, 4, 4, 3), dtype=np.float32)
    assert DIRECT_CALL_MAX < admission.CHUNK_ROWS
    np.testing.assert_allclose(classifier.probabilities(pixels), pixels[:, 0, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(classifier.probabilities(pixels[:3]), pixels[:3, 0, 0, 0], rtol=1e-6)
    assert classifier.model.calls == [("predict", admission.CHUNK_ROWS), *[("direct", 1)] * 3]
