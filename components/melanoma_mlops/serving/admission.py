"""The model server bounds its work, not only its input: admission by memory, deadlines, chunks.

Vetting each image (headers, pixel limits) bounds one request; a burst of valid requests, each fine
alone, still added up to an OOM kill (issue 24: a 150 MB request of 30,000 small JPEGs went on
decoding after its 504, and six more requests took the pod past its 3 GiB). So every request goes
through three bounds, framework-neutral here and used by the pyfunc under ``mlflow models serve``
(its scoring server's ``invocations``: :func:`melanoma_mlops.serving.pyfunc.harden_scoring_server`)
and by any ASGI server (a KServe / V2 endpoint) through :class:`AdmissionMiddleware`:

- **Admission by memory.** A request reserves what it will cost (:func:`request_cost`: its body
  parsed and base64-decoded, about :data:`BODY_EXPANSION` times the body, plus one chunk of decoded
  pixels) from a budget, :data:`REQUEST_MEMORY_FRACTION` of the memory left once the model is
  resident (beside the decode budget of :mod:`.memory_budget`). A request that does not fit beside
  those in progress, or beyond :data:`MAX_REQUESTS` at a time, is refused at once with 503 and a
  Retry-After (:class:`OverloadedError`): a burst waits at the client, not in the pod's memory. One that
  alone exceeds the budget is refused with 413 (:class:`TooLargeError`): split it.
- **Deadlines.** A request carries its deadline (arrival + the server's timeout) in a context
  variable that follows it into worker threads; the work calls :func:`check_deadline` between rows
  and chunks and stops with :class:`DeadlineExceededError`, so a request the server already answered
  504 stops costing CPU and memory within one chunk.
- **Chunks, one inference at a time.** Rows are decoded and scored :data:`CHUNK_ROWS` at a time,
  and at most one chunk per process is in the network at once (:func:`inference_slot`): memory does
  not grow with the rows of a request, nor with the requests in flight.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from melanoma_mlops.serving import memory_budget

logger = logging.getLogger(__name__)

#: Peak bytes per body byte while a JSON request is parsed: the body, the parsed JSON strings, the
#: base64-decoded images and the DataFrame around them (measured: see
#: tests/integration/test_memory_limits.py).
BODY_EXPANSION = 3.5
#: Rows decoded and scored at a time: ~10 MB of float32 pixels at 224 px and ~250 MB of ResNet50
#: activations on a CPU (measured +250 MiB for a batch of 16 at 224 px).
CHUNK_ROWS = 16
#: Share of the memory left once the model is resident that requests in flight may hold (the
#: decode budget has half of it; the rest is the network's activations and the server itself).
REQUEST_MEMORY_FRACTION = 0.3
#: Requests worked on at once per process: below the scoring server's worker threads (asyncio's
#: default pool: CPUs + 4), so a refusal always finds a thread to answer it at once.
MAX_REQUESTS = 4
#: Seconds a refused request is told to wait before it tries again.
RETRY_AFTER_S = 5


class AdmissionError(Exception):
    """A request the server will not (or no longer) work on; ``status`` is its HTTP status."""

    status = 503
    retry_after: int | None = None


class OverloadedError(AdmissionError):
    """Busy: the request does not fit beside those in progress. Try again shortly."""

    status = 503
    retry_after = RETRY_AFTER_S


class TooLargeError(AdmissionError):
    """The request alone needs more memory than the server has for requests: split it."""

    status = 413


class DeadlineExceededError(AdmissionError):
    """The request's time is up: its work stops (the client has had its 504)."""

    status = 504


@dataclass
class Ticket:
    """One admitted request: what it reserved and until when it may run."""

    cost: int
    deadline: float
    admitted_at: float = field(default_factory=time.monotonic)


_current: contextvars.ContextVar[Ticket | None] = contextvars.ContextVar("melanoma_request", default=None)
_inference = threading.Lock()


def current() -> Ticket | None:
    """The request this code works for (None outside a server: the app, the CLI's predict)."""
    return _current.get()


def check_deadline(what: str = "the request") -> None:
    """Stop the current request's work once its deadline has passed (no-op outside a request)."""
    ticket = _current.get()
    if ticket is not None and time.monotonic() > ticket.deadline:
        took = time.monotonic() - ticket.admitted_at
        message = f"{what} was cancelled after {took:.0f} s: it ran past the server's timeout"
        logger.warning(message)  # the client has had its 504; the server's log says the work stopped
        raise DeadlineExceededError(message)


@contextlib.contextmanager
def inference_slot() -> Iterator[None]:
    """Hold the process's one inference slot while a chunk is in the network."""
    with _inference:
        yield


def chunk_bytes(image_size: int, rows: int = CHUNK_ROWS) -> int:
    """float32 pixels of one chunk of decoded rows."""
    return rows * image_size * image_size * 3 * 4


def request_cost(body_bytes: int, image_size: int = 224) -> int:
    """Peak memory of one request of ``body_bytes``: its parsed body and one decoded chunk."""
    return int(body_bytes * BODY_EXPANSION) + chunk_bytes(image_size)


def _mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


class Admission:
    """Admits requests against a memory budget and a count (see the module docstring)."""

    def __init__(self, budget_bytes: int, max_requests: int = MAX_REQUESTS, image_size: int = 224) -> None:
        self.budget = int(budget_bytes)
        self.max_requests = max_requests
        self.image_size = image_size
        self.in_use = 0
        self.active = 0
        self._lock = threading.Lock()

    def admit(self, body_bytes: int, timeout_s: float) -> Ticket:
        """Reserve a request's memory or refuse it at once (never queue it)."""
        cost = request_cost(body_bytes, self.image_size)
        if cost > self.budget:
            raise TooLargeError(
                f"the request ({_mb(body_bytes)}) needs about {_mb(cost)} to work on, more than the "
                f"{_mb(self.budget)} this server has for requests: send fewer images per request"
            )
        with self._lock:
            if self.active >= self.max_requests or self.in_use + cost > self.budget:
                raise OverloadedError(
                    f"the server is busy ({self.active} request(s) in progress holding {_mb(self.in_use)} of "
                    f"{_mb(self.budget)}): retry in {RETRY_AFTER_S} s"
                )
            self.in_use += cost
            self.active += 1
        return Ticket(cost, time.monotonic() + timeout_s)

    def release(self, ticket: Ticket) -> None:
        with self._lock:
            self.in_use -= ticket.cost
            self.active -= 1

    @contextlib.contextmanager
    def request(self, body_bytes: int, timeout_s: float) -> Iterator[Ticket]:
        """Admit a request for the block; its deadline follows it into threads it starts."""
        ticket = self.admit(body_bytes, timeout_s)
        token = _current.set(ticket)
        try:
            yield ticket
        finally:
            _current.reset(token)
            self.release(ticket)


_process: dict[str, Admission] = {}
_process_lock = threading.Lock()


def for_process(refresh: bool = False, image_size: int = 224) -> Admission:
    """This process's admission, its budget computed once (again with ``refresh``: after the model
    is loaded, so the memory it holds is not counted as free)."""
    with _process_lock:
        if "admission" not in _process or refresh:
            free, _, source = memory_budget.free_bytes()
            budget = int(free * REQUEST_MEMORY_FRACTION)
            _process["admission"] = Admission(budget, MAX_REQUESTS, image_size)
            logger.info(
                "admitting at most %d request(s) at once, holding %s (%s of %s free of %s); %d rows a chunk",
                MAX_REQUESTS,
                _mb(budget),
                f"{REQUEST_MEMORY_FRACTION:.0%}",
                _mb(free),
                source,
                CHUNK_ROWS,
            )
        return _process["admission"]


# ------------------------------------------------------------------------------------------ ASGI
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class AdmissionMiddleware:
    """ASGI middleware: admit POSTs to ``paths`` before their body is read, and set their deadline.

    For a server of our own (a KServe / V2 endpoint on the same pyfunc). The declared
    ``Content-Length`` is admitted before a byte of the body is read; a body without one (chunked)
    is admitted at :data:`MAX_UNDECLARED_BYTES` and cut off with 413 beyond it. Refusals are JSON
    ``{"error": ...}`` with the status of the :class:`AdmissionError` (and ``Retry-After``).
    """

    MAX_UNDECLARED_BYTES = 16 * 2**20

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        admission: Admission | Callable[[], Admission] = for_process,
        timeout_s: float = 60.0,
        paths: tuple[str, ...] = ("/invocations", "/v2/models"),
    ) -> None:
        self.app = app
        self._admission = admission
        self.timeout_s = timeout_s
        self.paths = paths

    @property
    def admission(self) -> Admission:
        return self._admission if isinstance(self._admission, Admission) else self._admission()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") != "POST"
            or not scope["path"].startswith(self.paths)
        ):
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope.get("headers", []) if k.lower() == b"content-length"), None)
        size = int(declared) if declared is not None and declared.isdigit() else self.MAX_UNDECLARED_BYTES
        try:
            ticket = self.admission.admit(size, self.timeout_s)
        except AdmissionError as exc:
            await _refuse(send, exc)
            return
        token = _current.set(ticket)
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, _capped(receive, size), tracked)
        except AdmissionError as exc:
            if started:  # too late for a status of our own: the response is under way
                raise
            await _refuse(send, exc)
        finally:
            _current.reset(token)
            self.admission.release(ticket)


def _capped(receive: Receive, limit: int) -> Receive:
    """``receive`` that refuses a body longer than was admitted."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise TooLargeError(f"the request body is longer than the {_mb(limit)} admitted")
        return message

    return wrapped


async def _refuse(send: Send, exc: AdmissionError) -> None:
    body = json.dumps({"error": str(exc)}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if exc.retry_after is not None:
        headers.append((b"retry-after", str(math.ceil(exc.retry_after)).encode()))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
