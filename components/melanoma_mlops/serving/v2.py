"""The V2 (Open Inference) protocol's REST subset, in front of the registered pyfunc.

KServe's own server library (``kserve`` on PyPI) would be the first choice, but every release
(0.14-0.21) pins ``pandas<3`` and this project runs pandas 3 (``pip install --dry-run kserve``
downgrades it), so this is a small Starlette app - Starlette and uvicorn come with MLflow 3. It
speaks what KServe's V2 clients and probes use:

- ``GET /v2/health/live``, ``GET /v2/health/ready``
- ``GET /v2/models/{name}[/versions/{version}]`` (metadata), ``.../ready``
- ``POST /v2/models/{name}[/versions/{version}]/infer`` with one ``BYTES`` input ``image``: the
  encoded images as base64 text (the protocol's JSON form of bytes), one per element.

Every prediction goes through the loaded pyfunc's ``predict`` (``mlflow.pyfunc.load_model`` of
the registered version), never around it: the input vetting, the chunked scoring and whatever the
pyfunc logs are the same as under ``mlflow models serve``, the app and ``predict``. Requests are
admitted by :class:`~melanoma_mlops.serving.admission.AdmissionMiddleware` (memory, count,
deadline); a refused image is a 400 with the pyfunc's message, and the server goes on serving.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from melanoma_mlops.errors import DataError
from melanoma_mlops.serving import admission
from melanoma_mlops.serving.inputs import IMAGE_COLUMN

logger = logging.getLogger(__name__)

INPUT_DATATYPE = "BYTES"
#: The outputs of every answer: the pyfunc's columns with their V2 datatypes.
OUTPUTS = (("probability", "FP64"), ("label", "INT64"), ("class_name", "BYTES"))
#: What a client is told to send when its body is not an infer request.
EXPECTED = (
    f'send {{"inputs": [{{"name": "{IMAGE_COLUMN}", "datatype": "{INPUT_DATATYPE}", "shape": [N], '
    '"data": ["<base64 of the image file>", ...]}]}'
)
#: Seconds a request may run; beyond, its work stops and the client gets 504.
DEFAULT_TIMEOUT_S = 60.0


class RequestError(DataError):
    """A request the protocol does not allow (not JSON, no ``image`` input, a wrong datatype)."""


@dataclass(frozen=True)
class ServedModel:
    """The loaded pyfunc and what the protocol says about it."""

    pyfunc: Any  # mlflow.pyfunc.PyFuncModel
    name: str
    version: str
    threshold: float

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": [self.version] if self.version else [],
            "platform": "mlflow_pyfunc",
            "inputs": [{"name": IMAGE_COLUMN, "datatype": INPUT_DATATYPE, "shape": [-1]}],
            "outputs": [{"name": n, "datatype": t, "shape": [-1]} for n, t in OUTPUTS],
            "parameters": {"threshold": self.threshold},
        }


def images_of(body: bytes) -> tuple[list[str], str | None]:
    """The ``image`` input's elements (base64 text) and the request id, from an infer body."""
    try:
        request = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(
            f"the request body ({len(body):,} bytes) is not JSON ({exc}); {EXPECTED}"
        ) from None
    inputs = request.get("inputs") if isinstance(request, dict) else None
    if not isinstance(inputs, list):
        raise RequestError(f"the request has no 'inputs' list; {EXPECTED}")
    named = [i for i in inputs if isinstance(i, dict) and i.get("name") == IMAGE_COLUMN]
    if len(named) != 1 or len(inputs) != 1:
        names = [i.get("name") if isinstance(i, dict) else i for i in inputs]
        raise RequestError(f"the request needs exactly one input named '{IMAGE_COLUMN}'; got {names}")
    tensor = named[0]
    if tensor.get("datatype") != INPUT_DATATYPE:
        raise RequestError(
            f"input '{IMAGE_COLUMN}' must have datatype {INPUT_DATATYPE}, not {tensor.get('datatype')!r}"
        )
    data = tensor.get("data")
    if not isinstance(data, list) or not all(isinstance(d, str) for d in data):
        raise RequestError(f"input '{IMAGE_COLUMN}': 'data' must be a list of base64 strings; {EXPECTED}")
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or not all(isinstance(s, int) for s in shape)
        or math.prod(shape) != len(data)
    ):
        raise RequestError(f"input '{IMAGE_COLUMN}': shape {shape} does not match its {len(data)} element(s)")
    if not data:
        raise RequestError(f"input '{IMAGE_COLUMN}' holds no image")
    request_id = request.get("id")
    return data, str(request_id) if request_id is not None else None


def infer_response(model: ServedModel, scores: pd.DataFrame, request_id: str | None) -> dict[str, Any]:
    """The V2 answer: one output per pyfunc column, the model's name, version and threshold."""
    answer: dict[str, Any] = {
        "model_name": model.name,
        "model_version": model.version,
        "parameters": {"threshold": model.threshold},
        "outputs": [
            {"name": n, "datatype": t, "shape": [len(scores)], "data": scores[n].tolist()} for n, t in OUTPUTS
        ],
    }
    if request_id is not None:
        answer["id"] = request_id
    return answer


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def create_app(model: ServedModel, timeout_s: float = DEFAULT_TIMEOUT_S) -> admission.AdmissionMiddleware:
    """The ASGI app serving ``model`` (already loaded: the server listens once it can answer)."""

    def unknown(request: Request) -> JSONResponse | None:
        name = request.path_params["name"]
        version = request.path_params.get("version")
        if name != model.name or (version is not None and version != model.version):
            asked = f"{name}" + (f" version {version}" if version is not None else "")
            return _error(
                404, f"no model {asked} here: this server serves {model.name} version {model.version}"
            )
        return None

    async def live(request: Request) -> JSONResponse:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> JSONResponse:
        return JSONResponse({"ready": True})

    async def metadata(request: Request) -> JSONResponse:
        return unknown(request) or JSONResponse(model.metadata())

    async def model_ready(request: Request) -> JSONResponse:
        return unknown(request) or JSONResponse({"name": model.name, "ready": True})

    async def infer(request: Request) -> JSONResponse:
        if refused := unknown(request):
            return refused
        try:
            images, request_id = images_of(await request.body())
            # In a worker thread, which inherits the request's admission ticket (its deadline).
            scores = await run_in_threadpool(model.pyfunc.predict, pd.DataFrame({IMAGE_COLUMN: images}))
        except admission.AdmissionError as exc:
            retry = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
            return _error(exc.status, str(exc), retry)
        except DataError as exc:  # InvalidImageError and RequestError: the client's to fix
            return _error(400, str(exc))
        except MlflowException as exc:  # MLflow's own schema enforcement refused the input
            if exc.get_http_status_code() >= 500:
                raise
            return _error(400, exc.message)
        return JSONResponse(infer_response(model, scores, request_id))

    routes = [
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
    ]
    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        routes += [
            Route(prefix, metadata),
            Route(f"{prefix}/ready", model_ready),
            Route(f"{prefix}/infer", infer, methods=["POST"]),
        ]

    async def internal(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("internal error answering %s", request.url.path)
        return _error(500, "internal error: see the server's log")

    app = Starlette(routes=routes, exception_handlers={Exception: internal})
    return admission.AdmissionMiddleware(app, timeout_s=timeout_s, paths=("/v2/models",))
