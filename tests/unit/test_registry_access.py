"""Who may move aliases, decided on numbers (registry/access.plan), and the MLflow server app's two
additions (tracking_server/ui_app: the UI's default view, alias refusals explained) on a bare Flask
app; the UI links we print (ui_links). No server, no browser."""

from __future__ import annotations

import json

import pytest

from melanoma_mlops import ui_links
from melanoma_mlops.errors import ConfigError
from melanoma_mlops.evaluation.metrics import CI_KEYS, METRIC_KEYS
from melanoma_mlops.registry import access
from melanoma_mlops.registry.access import UserAccess
from melanoma_mlops.tracking_server import ui_app

MODEL = "melanoma-resnet50"


def _users(**perms: str) -> list[UserAccess]:
    return [UserAccess(name, name == "admin", perm) for name, perm in perms.items()]


def test_people_above_read_are_brought_down_and_the_promoter_keeps_manage() -> None:
    decided = access.plan(
        _users(
            admin="READ", pipeline="MANAGE", alice="READ", bob="EDIT", carol="MANAGE", dan="NO_PERMISSIONS"
        ),
        "pipeline",
        MODEL,
    )
    assert [(c.username, c.before, c.after) for c in decided.changes] == [
        ("bob", "EDIT", "READ"),
        ("carol", "MANAGE", "READ"),
    ]
    assert decided.admins == ("admin",)  # reported, never changed: admins bypass permissions


def test_a_promoter_without_manage_gets_it() -> None:
    (change,) = access.plan(_users(pipeline="READ", alice="READ"), "pipeline", MODEL).changes
    assert (change.username, change.after) == ("pipeline", "MANAGE")
    assert "moves its aliases" in change.why


def test_an_unknown_promoter_is_refused_with_what_to_do() -> None:
    with pytest.raises(ConfigError, match="no MLflow user 'pipline': create the promotion identity first"):
        access.plan(_users(pipeline="MANAGE"), "pipline", MODEL)


def test_who_can_move_aliases() -> None:
    can = {
        u.username: u.can_move_aliases for u in _users(admin="READ", p="MANAGE", e="EDIT", u="USE", r="READ")
    }
    assert can == {"admin": True, "p": True, "e": True, "u": False, "r": False}


def test_the_report_says_before_after_and_why() -> None:
    users = _users(admin="READ", pipeline="MANAGE", bob="EDIT")
    decided = access.plan(users, "pipeline", MODEL)
    after = _users(admin="READ", pipeline="MANAGE", bob="READ")
    lines = access.report_lines(decided, after, "pipeline", MODEL)
    assert lines[0] == "melanoma-resnet50: only 'pipeline' (and MLflow admins) may move its aliases"
    bob = next(line for line in lines if line.strip().startswith("bob"))
    assert "EDIT -> READ" in bob and "set: people read melanoma-resnet50" in bob
    assert any("admin" in line and "bypasses every permission" in line for line in lines)
    assert lines[-1] == "1 grant(s) made"
    dry = access.report_lines(decided, users, "pipeline", MODEL, dry_run=True)
    assert "would set" in next(line for line in dry if line.strip().startswith("bob"))


# ------------------------------------------------------------------ the server app's additions


@pytest.fixture
def flask_app(tmp_path):
    """A bare Flask app shaped like MLflow's: a ``serve`` view for index.html, an alias endpoint."""
    from flask import Flask, Response

    (tmp_path / "index.html").write_text("<!doctype html><html><head><title>MLflow</title></head></html>")
    app = Flask("mlflow-like", static_folder=str(tmp_path))
    app.add_url_rule("/", "serve", lambda: "original")

    @app.route("/ajax-api/2.0/mlflow/registered-models/alias", methods=["POST"])
    def alias() -> Response:
        return Response("Permission denied", status=403)  # what basic-auth answers

    return app


def test_the_ui_page_stores_model_training_as_the_default_view(flask_app) -> None:
    ui_app.install(flask_app)
    page = flask_app.test_client().get("/").get_data(as_text=True)
    assert page.startswith("<!doctype html><html><head>" + ui_app.DEFAULT_VIEW_SCRIPT)
    assert "localStorage.getItem(k)===null" in page  # a user's own choice is kept
    assert json.dumps(json.dumps("machine_learning")) in page and '"mlflow.workflowType_v1"' in page
    assert ui_app.with_default_view(page) == page  # once


def test_a_refused_alias_move_says_what_to_do(flask_app) -> None:
    ui_app.explain_alias_refusals(flask_app)
    resp = flask_app.test_client().post("/ajax-api/2.0/mlflow/registered-models/alias", json={})
    assert resp.status_code == 403
    body = resp.get_json()
    assert body["error_code"] == "PERMISSION_DENIED" and "melanoma-mlops promote" in body["message"]


# ------------------------------------------------------------------ the links we print


def test_every_link_opens_in_the_model_training_view() -> None:
    server = "http://mlflow.example:5000"
    links = [
        ui_links.run_url("r1", "3", server),
        ui_links.run_url("r1", None, server),
        ui_links.runs_table_url("3", server),
        ui_links.compare_url(["r1", "r2"], "3", server),
        ui_links.model_version_url(MODEL, "7", server),
    ]
    assert all(link.startswith(server + "/#/") and link.endswith(ui_links.WORKFLOW_PARAM) for link in links)
    assert ui_links.run_url("r1", "3", "sqlite:///mlruns/mlflow.db").startswith(ui_links.LOCAL_UI)
    assert "viewStateShareKey=melanoma-headline" in links[2]
    assert "runs=%5B%22r1%22%2C%22r2%22%5D" in links[3]


def test_the_runs_table_view_shows_metrics_the_evaluate_step_logs() -> None:
    ((key, value),) = ui_links.headline_view_tags().items()
    assert key == "mlflow.sharedViewState.melanoma-headline"
    state = json.loads(value)
    logged = {f"test/{k}" for k in METRIC_KEYS} | {
        f"test/{k}_ci_{e}" for k in CI_KEYS for e in ("low", "high")
    }
    assert state["selectedColumns"] == [f"metrics.`{c}`" for c in ui_links.HEADLINE_COLUMNS]
    assert set(ui_links.HEADLINE_COLUMNS) <= logged
    assert (state["orderByKey"], state["orderByAsc"]) == ("attributes.start_time", False)


def test_a_refusal_by_the_server_is_one_line_naming_the_user(monkeypatch) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, PERMISSION_DENIED

    from melanoma_mlops import tracking_client

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    refused = MlflowException("Permission denied", error_code=PERMISSION_DENIED)
    line = tracking_client.refused_message(refused, "http://mlflow:5000")
    assert line == (
        "the MLflow tracking server at http://mlflow:5000 refused MLflow user alice: Permission denied "
        "(permissions: docs/registry-access.md)"
    )
    assert tracking_client.refused_message(MlflowException("bad", error_code=INVALID_PARAMETER_VALUE)) is None
    assert tracking_client.refused_message(ValueError("x")) is None
