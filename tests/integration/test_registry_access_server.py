"""Only the promotion identity moves aliases, against a REAL tracking server with basic-auth (issue 22):
``registry-access`` run by the admin brings people's grants down to READ and keeps the promotion
identity's MANAGE; a person's ``promote`` is refused up front with one ``error:`` line (no lock
taken, no alias moved, the server refuses the alias itself too); the promotion identity's works.
The version page's own alias editor is refused in a real browser in test_registry_access_browser.py.
"""

from __future__ import annotations

import re
import shlex

import pytest
from auth_server import MODEL, as_user
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from readme_blocks import ROOT, blocks, commands, section

from melanoma_mlops.registry import access
from melanoma_pipelines import cli


@pytest.fixture
def server(auth_registry: str) -> str:
    """The session's basic-auth server (conftest ``auth_registry``, shared with the browser test)."""
    return auth_registry


def _cli(url: str, user: str, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    with as_user(user):
        return cli.main(argv)


def _permissions(url: str) -> dict[str, str]:
    with as_user("admin"):
        return {u.username: u.permission for u in access.AccessAdmin(url).users(MODEL)}


def _documented_commands() -> list[tuple[str, list[str]]]:
    """docs/registry-access.md's commands as (MLflow user, argv), run here as written (only the
    server's address and the password differ; tests/readme_blocks.py NOT_RUN)."""
    body = section((ROOT / "docs" / "registry-access.md").read_text(), "Setting it up")
    shown = []
    for line in (c for _, code in blocks(body) for c in commands(code)):
        words = shlex.split(line.split("#")[0])
        env = dict(w.split("=", 1) for w in words if re.match(r"[A-Z_]+=", w))
        argv = words[next(i for i, w in enumerate(words) if w.endswith("melanoma-mlops")) + 1 :]
        shown.append((env["MLFLOW_TRACKING_USERNAME"], argv))
    return shown


def test_registry_access_brings_people_down_to_read_and_keeps_the_promoter(
    server, monkeypatch, capsys
) -> None:
    with as_user("admin"):
        access.AccessAdmin(server).grant("bob", MODEL, "EDIT")  # someone was given more, by hand
    assert _permissions(server)["bob"] == "EDIT"
    (user, dry_run), (same_user, apply) = _documented_commands()
    assert user == same_user == "admin" and dry_run == [*apply, "--dry-run"]

    assert _cli(server, user, dry_run, monkeypatch) == 0
    dry = capsys.readouterr().out
    assert "would set: people read melanoma-resnet50" in dry and _permissions(server)["bob"] == "EDIT"

    assert _cli(server, user, apply, monkeypatch) == 0
    out = capsys.readouterr().out
    assert "melanoma-resnet50: only 'pipeline' (and MLflow admins) may move its aliases" in out
    assert "EDIT -> READ" in out and "1 grant(s) made" in out
    assert _permissions(server) == {"admin": "READ", "alice": "READ", "bob": "READ", "pipeline": "MANAGE"}
    with as_user("bob"), pytest.raises(MlflowException, match="only the promotion identity"):
        MlflowClient(server).set_registered_model_alias(MODEL, "champion", "1")  # the server refuses too


def test_registry_access_needs_an_admin_and_a_server(server, monkeypatch, capsys) -> None:
    assert _cli(server, "alice", ["registry-access", "--promoter", "pipeline"], monkeypatch) == 2
    assert capsys.readouterr().err.startswith(f"error: {server}: ")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlruns/mlflow.db")
    assert cli.main(["registry-access", "--promoter", "pipeline"]) == 2
    assert "is a local store, which has no users" in capsys.readouterr().err


def test_a_persons_promote_is_refused_up_front_and_the_promoters_works(server, monkeypatch, capsys) -> None:
    with as_user("alice"):
        before = MlflowClient(server).get_registered_model(MODEL).aliases  # the browser test may move them
    argv = ["promote", "--version", "1", "--reason", "reviewed the gate report"]
    assert _cli(server, "alice", argv, monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "error: MLflow user 'alice' has READ on melanoma-resnet50: only the promotion identity"
    )
    with as_user("admin"):
        client = MlflowClient(server)
        assert client.get_registered_model(MODEL).aliases == before
        locks = client.search_registered_models(f"name LIKE '{MODEL}.%'")
    assert locks == []  # refused before the promotion lock was taken

    assert _cli(server, "pipeline", argv, monkeypatch) == 0
    assert "promoted melanoma-resnet50 version 1 to @champion" in capsys.readouterr().out
    with as_user("alice"):
        assert MlflowClient(server).get_registered_model(MODEL).aliases["champion"] == "1"  # people read it
