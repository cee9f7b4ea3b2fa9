"""MLflow's server app with the UI opening in its *Model training* view: the ``mlflow.app`` plugins
``melanoma`` and ``melanoma-basic-auth`` (entry points in pyproject.toml) that
``melanoma-mlops mlflow-server`` (locally, in the server image and in k8s) and ``make ui`` serve.

Why this exists. MLflow 3's UI has two views, GenAI and Model training. Up to at least 3.17 it picks
one from a switch kept in the browser's localStorage (``mlflow.workflowType_v1``), GenAI when unset,
and ignores the experiment's ``mlflow.experimentKind`` tag (mlflow/mlflow#24498): a user who opens
the server's root and clicks our experiment lands in an empty "Traces" overview, and pages reached
by links without ``?workflowType=`` (Compare) fall back to GenAI. No server option changes that
default. These apps serve MLflow's own ``index.html`` with one line added before MLflow's script:
when the browser has no choice stored yet, store "machine_learning". A user who flips the switch
keeps their choice. The basic-auth variant also answers a refused alias move with a message saying
what to do instead (``melanoma-mlops promote``) where basic-auth sends a bare "Permission denied"
that the UI shows as INTERNAL_ERROR (:mod:`melanoma_mlops.registry.access` has the permission
rule). Everything else is MLflow's app, unchanged (``create_app`` of basic-auth included); the
one thing MLflow does for the app *name* ``basic-auth`` alone, a token for its GenAI job runners,
does not apply (job execution is off on our servers).

Imported only inside the server process (uvicorn imports it), so the start command itself stays
standard-library only.
"""

from __future__ import annotations

import json
import os
from typing import Any

#: MLflow's localStorage key of the GenAI / Model-training switch (useLocalStorage key + "_v" + version).
WORKFLOW_TYPE_KEY = "mlflow.workflowType_v1"
WORKFLOW_TYPE = "machine_learning"
#: Runs before MLflow's bundle reads the switch; a stored choice (the user's) is left alone.
_KEY, _VALUE = json.dumps(WORKFLOW_TYPE_KEY), json.dumps(json.dumps(WORKFLOW_TYPE))
DEFAULT_VIEW_SCRIPT = (
    f"<script>try{{var k={_KEY};if(window.localStorage.getItem(k)===null)"
    f"window.localStorage.setItem(k,{_VALUE})}}catch(e){{}}</script>"
)


def with_default_view(index_html: str) -> str:
    """MLflow's index.html with :data:`DEFAULT_VIEW_SCRIPT` as the first element of ``<head>``."""
    if DEFAULT_VIEW_SCRIPT in index_html:
        return index_html
    head = index_html.find("<head>")
    if head < 0:
        return DEFAULT_VIEW_SCRIPT + index_html
    at = head + len("<head>")
    return index_html[:at] + DEFAULT_VIEW_SCRIPT + index_html[at:]


def install(flask_app: Any) -> None:
    """Serve MLflow's UI page (the ``serve`` view, any static prefix) with the default view added."""
    from flask import Response

    original = flask_app.view_functions["serve"]
    index = os.path.join(flask_app.static_folder or "", "index.html")

    def serve() -> Any:
        if not os.path.isfile(index):
            return original()
        with open(index, encoding="utf-8") as fh:
            page = with_default_view(fh.read())
        return Response(page, mimetype="text/html", headers={"Cache-Control": "no-cache"})

    flask_app.view_functions["serve"] = serve


#: Said when the server refuses a user's alias move (the registered model page's alias editor, the
#: REST API): basic-auth answers a bare "Permission denied", which MLflow's UI shows as INTERNAL_ERROR.
ALIAS_REFUSED = (
    "Permission denied: only the promotion identity moves this model's aliases. Use `melanoma-mlops "
    "promote` (as that identity), which checks the gate and records the reason and who moved what "
    "(docs/registry-access.md)."
)


def explain_alias_refusals(flask_app: Any) -> None:
    """Turn basic-auth's plain 403 for an alias move into MLflow's JSON error, saying what to do."""
    from flask import request

    def after(response: Any) -> Any:
        if response.status_code == 403 and request.path.endswith("/registered-models/alias"):
            body = json.dumps({"error_code": "PERMISSION_DENIED", "message": ALIAS_REFUSED})
            response.set_data(body)
            response.mimetype = "application/json"
        return response

    flask_app.after_request(after)


def _flask_app(*, auth: bool = False) -> Any:
    from mlflow.server import app as flask_app

    if not getattr(flask_app, "_melanoma_default_view", False):
        install(flask_app)
        flask_app._melanoma_default_view = True
    if auth and not getattr(flask_app, "_melanoma_alias_message", False):
        explain_alias_refusals(flask_app)
        flask_app._melanoma_alias_message = True
    return flask_app


def create_app() -> Any:
    """The ``melanoma`` app: MLflow's server (FastAPI around its Flask app), default view added."""
    _flask_app()
    from mlflow.server.fastapi_app import app  # the app `mlflow server` serves by default

    return app


def create_auth_app() -> Any:
    """The ``melanoma-basic-auth`` app: MLflow's basic-auth app, default view added, alias refusals
    explained."""
    flask_app = _flask_app(auth=True)
    from mlflow.server.auth import create_app as create_basic_auth_app

    return create_basic_auth_app(flask_app)
