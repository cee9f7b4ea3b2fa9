"""The promotion gate and the manual registry moves, on a real MLflow store with tiny real models.

One module-scoped store holds every scenario; each scenario registers under its own model name,
so the tests are independent of each other's order while the models are trained only once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import registry_helpers as rh
from mlflow.tracking import MlflowClient

from melanoma_mlops import tracking, tracking_client
from melanoma_mlops.config import GateConfig, TrainingConfig
from melanoma_mlops.errors import ConfigError, GateError
from melanoma_mlops.registry import audit_tags, record, stamp
from melanoma_mlops.registry import champion as promotion
from melanoma_mlops.registry.report import gate_markdown


@pytest.fixture(scope="module")
def prep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[rh.Prepared]:
    root = tmp_path_factory.mktemp("promotion")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", "")  # replaced by use_store; restored afterwards
        rh.use_store(root)
        yield rh.prepare(root, variants=("good", "bad"))


@pytest.fixture
def client(prep: rh.Prepared) -> MlflowClient:
    return MlflowClient()


def aliases(client: MlflowClient, name: str) -> dict[str, str]:
    # The SQLite store reports alias versions as ints, a REST store as strings.
    return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}


# The absolute limits off: only the comparison with the champion can decide.
NO_ABSOLUTE_LIMITS = {"min_auc": 0.0, "min_sensitivity": 0.0, "min_specificity": 0.0}


def test_variants_are_what_the_scenarios_need(prep: rh.Prepared) -> None:
    good, bad = prep.variants["good"].auc, prep.variants["bad"].auc
    assert good >= 0.9
    assert bad == pytest.approx(1 - good, abs=1e-6)


def test_first_version_becomes_champion(prep: rh.Prepared, client: MlflowClient) -> None:
    decision = rh.register_and_gate(prep, "good", "first")

    assert decision["passed"] and decision["promoted"] and decision["action"] == "promoted"
    assert decision["champion"] is None
    # challenger stays on the newest candidate, which is now also the champion
    assert aliases(client, "first") == {"champion": "1", "challenger": "1"}
    tags = client.get_model_version("first", "1").tags
    assert tags["gate.passed"] == "true"
    assert tags["gate.champion_version"] == "none"
    assert float(tags["gate.candidate_auc"]) == pytest.approx(prep.variants["good"].auc, abs=0.02)
    assert tags["audit.1.action"] == "auto-promote"
    assert tags["audit.1.previous_champion"] == "none"
    assert tags["audit.1.by"] == stamp.who()
    assert record.champion_history(client, "first") == ["1"]


def test_gate_is_a_nested_promote_run_with_the_decision(prep: rh.Prepared, client: MlflowClient) -> None:
    version, parent = rh.register(prep, "good", "tracked")
    decision = rh.gate(prep, "good", "tracked", version, parent)

    run = client.get_run(decision["run_id"])
    assert run.info.run_name == "promote"
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.tags["gate.passed"] == "true"
    assert run.data.params["gate_min_auc"] == str(rh.GATE_DEFAULTS["min_auc"])
    assert run.data.metrics["gate/passed"] == 1.0
    assert client.get_run(parent).info.status == "FINISHED"  # the gate ends the pipeline run
    assert client.get_run(parent).data.metrics["gate/candidate_auc"] == pytest.approx(
        decision["candidate"]["auc"]
    )
    files = {f.path for f in client.list_artifacts(decision["run_id"], "promotion")}
    assert files == {"promotion/gate.md", "promotion/gate_decision.json"}
    # The served artifact reproduces the evaluate step's AUC: no train/serve preprocessing skew.
    assert decision["candidate"]["auc"] == pytest.approx(decision["candidate"]["auc_evaluate_step"], abs=1e-3)
    json.dumps(decision)  # what the KFP wrapper returns must serialise


def test_worse_version_stays_challenger_with_the_failed_gate_recorded(
    prep: rh.Prepared, client: MlflowClient
) -> None:
    rh.register_and_gate(prep, "good", "worse")
    decision = rh.register_and_gate(prep, "bad", "worse")

    assert not decision["passed"] and not decision["promoted"] and decision["action"] == "rejected"
    assert aliases(client, "worse") == {"champion": "1", "challenger": "2"}
    failed = {c["name"] for c in decision["checks"] if not c["passed"]}
    assert {"auc", "vs_champion"} <= failed
    tags = client.get_model_version("worse", "2").tags
    assert tags["gate.passed"] == "false"
    assert tags["gate.action"] == "rejected"
    assert tags["gate.reason"].startswith("failed: AUC")
    assert tags["gate.champion_version"] == "1"
    # The champion was re-scored on the candidate's test set, at its own frozen threshold.
    assert float(tags["gate.champion_auc_same_test"]) == pytest.approx(prep.variants["good"].auc, abs=0.02)
    assert float(tags["gate.champion_threshold"]) == pytest.approx(
        float(client.get_model_version("worse", "1").tags["threshold"])
    )
    assert not any(k.startswith("audit.") for k in tags)


def test_comparison_with_the_champion_blocks_a_model_within_absolute_limits(
    prep: rh.Prepared, client: MlflowClient
) -> None:
    rh.register_and_gate(prep, "good", "drop")
    decision = rh.register_and_gate(prep, "bad", "drop", **NO_ABSOLUTE_LIMITS)

    by_name = {c["name"]: c for c in decision["checks"]}
    assert by_name["auc"]["passed"] and by_name["sensitivity"]["passed"]
    assert not by_name["vs_champion"]["passed"]
    assert decision["reason"].startswith("failed: AUC")
    assert "vs champion v1" in decision["reason"]
    assert decision["champion"]["auc_delta"] == pytest.approx(
        prep.variants["bad"].auc - prep.variants["good"].auc, abs=0.02
    )
    assert aliases(client, "drop") == {"champion": "1", "challenger": "2"}


def test_equal_auc_is_not_worse_than_the_champion(prep: rh.Prepared, client: MlflowClient) -> None:
    rh.register_and_gate(prep, "good", "equal")
    decision = rh.register_and_gate(prep, "good", "equal")

    assert decision["promoted"]
    assert decision["champion"]["auc_delta"] == pytest.approx(0.0, abs=1e-6)
    assert aliases(client, "equal") == {"champion": "2", "challenger": "2"}


def test_better_version_is_promoted_and_rollback_restores_the_previous_champion(
    prep: rh.Prepared, client: MlflowClient
) -> None:
    first = rh.register_and_gate(prep, "bad", "better", **NO_ABSOLUTE_LIMITS)
    assert first["promoted"]
    second = rh.register_and_gate(prep, "good", "better")

    assert second["promoted"] and second["champion"]["version"] == "1"
    assert second["champion"]["auc_delta"] > 0
    assert aliases(client, "better") == {"champion": "2", "challenger": "2"}
    assert client.get_model_version("better", "2").tags["audit.1.previous_champion"] == "1"
    assert record.champion_history(client, "better") == ["1", "2"]

    entry = promotion.rollback("better", reason="sensitivity complaints from clinic A")

    assert aliases(client, "better")["champion"] == "1"
    assert entry["action"] == "rollback" and entry["previous_champion"] == "2"
    # Both versions of every move get an entry: v1 lost @champion to v2, then got it back.
    trail_v1 = audit_tags.audit_trail(client, "better", "1")
    assert [e["action"] for e in trail_v1] == ["auto-promote", "replaced", "rollback"]
    assert trail_v1[1]["replaced_by"] == "2"
    assert trail_v1[-1]["reason"] == "sensitivity complaints from clinic A"
    assert trail_v1[-1]["by"] == stamp.who()
    trail_v2 = audit_tags.audit_trail(client, "better", "2")
    assert [e["action"] for e in trail_v2] == ["auto-promote", "rolled-back"]
    # The history only grows: the rollback is one more move, not an erased one.
    assert record.champion_history(client, "better") == ["1", "2", "1"]
    moves = record.history(client, "better")
    assert [(m["action"], m["from"], m["to"]) for m in moves] == [
        ("auto-promote", "", "1"),
        ("auto-promote", "1", "2"),
        ("rollback", "2", "1"),
    ]
    assert moves[1]["gate"]["passed"] == "true" and moves[1]["gate"]["vs"] == "1"
    assert float(moves[1]["gate"]["auc"]) == pytest.approx(prep.variants["good"].auc, abs=0.02)
    with pytest.raises(GateError, match="no earlier champion"):
        promotion.rollback("better", reason="again")
    assert record.champion_history(client, "better") == ["1", "2", "1"]


def test_force_promotion_of_a_failed_version_needs_a_reason(prep: rh.Prepared, client: MlflowClient) -> None:
    rh.register_and_gate(prep, "good", "force")
    rh.register_and_gate(prep, "bad", "force")

    with pytest.raises(GateError, match="gate failed"):
        promotion.promote("force", None, reason="try it")
    with pytest.raises(GateError, match="force-reason"):
        promotion.promote("force", "2", reason="try it", force=True)
    with pytest.raises(GateError, match="reason is required"):
        promotion.promote("force", "2", reason="  ", force=True, force_reason="x")
    assert aliases(client, "force")["champion"] == "1"

    entry = promotion.promote(
        "force", "2", reason="incident drill", force=True, force_reason="testing the rollback runbook"
    )

    assert entry["action"] == "force-promote"
    assert aliases(client, "force") == {"champion": "2", "challenger": "2"}
    tags = client.get_model_version("force", "2").tags
    assert tags["audit.1.forced"] == "true"
    assert tags["audit.1.force_reason"] == "testing the rollback runbook"
    assert tags["audit.1.gate_passed"] == "false"
    assert tags["audit.1.previous_champion"] == "1"
    with pytest.raises(GateError, match="already @champion"):
        promotion.promote("force", "2", reason="again", force=True, force_reason="x")


def test_without_auto_promote_the_gate_only_recommends(prep: rh.Prepared, client: MlflowClient) -> None:
    decision = rh.register_and_gate(prep, "good", "manual", auto_promote=False)

    assert decision["passed"] and not decision["promoted"] and decision["action"] == "recommended"
    assert aliases(client, "manual") == {"challenger": "1"}
    assert "melanoma-mlops promote --version 1" in gate_markdown(decision)

    entry = promotion.promote("manual", None, reason="reviewed the gate report")

    assert entry["action"] == "promote" and entry["version"] == "1"
    assert aliases(client, "manual") == {"champion": "1", "challenger": "1"}
    with pytest.raises(GateError, match="already @champion"):
        promotion.promote("manual", None, reason="nothing left")


def test_an_ungated_version_is_refused_without_force(prep: rh.Prepared, client: MlflowClient) -> None:
    rh.register(prep, "good", "ungated")
    with pytest.raises(GateError, match="never gated"):
        promotion.promote("ungated", "1", reason="looks fine")
    with pytest.raises(GateError, match="no version '7'"):
        promotion.promote("ungated", "7", reason="typo")


def test_champion_that_trained_on_test_images_is_compared_on_the_rest(
    prep: rh.Prepared, client: MlflowClient
) -> None:
    """Data grew and the split moved: the champion's training set now overlaps the test set."""
    version, parent = rh.register(prep, "good", "overlap")
    test = pd.read_csv(prep.manifests["test"], dtype={"sha256": str})
    leaked = pd.concat([test[test["label"] == 0].head(3), test[test["label"] == 1].head(2)])
    train_csv = prep.root / "balanced_train_overlap.csv"
    train = pd.read_csv(prep.manifests["train"], dtype={"sha256": str})
    pd.concat([train, leaked]).to_csv(train_csv, index=False)
    with tracking.step_run(parent, "oversample"):  # what the pipeline's oversample step logs
        mlflow.log_artifact(str(train_csv), "data")
    rh.gate(prep, "good", "overlap", version, parent)

    decision = rh.register_and_gate(prep, "good", "overlap")

    champ = decision["champion"]
    assert champ["train_overlap"] == 5
    assert champ["compared_on"].startswith(f"the {len(test) - 5} test images the champion did not train on")
    assert client.get_model_version("overlap", "2").tags["gate.champion_train_overlap"] == "5"
    assert "Champion training images in this test set: 5" in gate_markdown(decision)


def test_markdown_of_a_rejection_explains_the_override(prep: rh.Prepared) -> None:
    rh.register_and_gate(prep, "good", "md")
    decision = rh.register_and_gate(prep, "bad", "md")

    text = gate_markdown(decision)

    assert text.startswith("# Promotion gate: md version 2")
    assert "FAILED - stays @challenger" in text
    assert "| auc | FAIL |" in text
    assert "| champion | 1 |" in text
    assert "--force --force-reason" in text


def test_limits_and_unknown_versions_are_refused_clearly(prep: rh.Prepared) -> None:
    version, parent = rh.register(prep, "good", "limits")
    with pytest.raises(ConfigError, match=r"min.auc 1\.5"):
        rh.gate(prep, "good", "limits", version, parent, min_auc=1.5)
    with pytest.raises(GateError, match="no version '9'"):
        rh.gate(prep, "good", "limits", "9", parent)


def test_who_falls_back_to_user_when_getpass_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_user() -> str:
        raise OSError("no passwd entry for uid 10001")

    monkeypatch.setattr(stamp.getpass, "getuser", no_user)
    monkeypatch.setenv("USER", "pod-user")
    assert stamp.who() == "pod-user"


def test_store_is_where_the_tests_put_it(prep: rh.Prepared) -> None:
    assert Path(tracking_client.tracking_uri().removeprefix("sqlite:///")).is_relative_to(prep.root)


# ---------------------------------------------------------------------------------------------
# melanoma-mlops promote
# ---------------------------------------------------------------------------------------------


def test_promote_command_promotes_rolls_back_and_refuses_clearly(
    prep: rh.Prepared, client: MlflowClient, capsys: pytest.CaptureFixture[str]
) -> None:
    rh.register_and_gate(prep, "good", "cli")
    rh.register_and_gate(prep, "good", "cli", auto_promote=False)
    rh.register_and_gate(prep, "bad", "cli")
    capsys.readouterr()

    assert rh.registry_cli(["promote", "--model-name", "cli", "--version", "2", "--reason", "review ok"]) == 0
    out = capsys.readouterr().out
    assert "promoted cli version 2 to @champion (previous champion: 1)" in out
    assert "recorded as move 2 of the champion history" in out
    assert f"as audit.1 on version 2: by {stamp.who()}" in out

    assert rh.registry_cli(["promote", "--model-name", "cli", "--reason", "try the challenger"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: refusing to promote cli version 3: its gate failed")
    assert "--force" in err and "Traceback" not in err

    argv = [
        "promote",
        "--model-name",
        "cli",
        "--reason",
        "drill",
        "--force",
        "--force-reason",
        "runbook",
        "--json",
    ]
    assert rh.registry_cli(argv) == 0
    entry = json.loads(capsys.readouterr().out)
    assert entry["action"] == "force-promote" and entry["version"] == "3"
    assert entry["state"]["champion"] == {"version": "3", "gate.passed": "false"}
    assert entry["state"]["history"] == ["1", "2", "3"]

    assert rh.registry_cli(["promote", "--model-name", "cli", "--rollback", "--reason", "drill over"]) == 0
    assert "rolled back @champion of cli: version 3 -> 2" in capsys.readouterr().out
    assert aliases(client, "cli")["champion"] == "2"

    assert rh.registry_cli(["history", "--model-name", "cli"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("cli: @champion = 2, @challenger = 3; 4 move(s) shown")
    assert "force-promote  v2 -> v3" in text and "forced: runbook" in text
    assert "rollback       v3 -> v2" in text and "why:  drill over" in text
    assert rh.registry_cli(["history", "--model-name", "cli", "--json", "--limit", "1"]) == 0
    (last,) = json.loads(capsys.readouterr().out)["moves"]
    assert (last["n"], last["action"], last["from"], last["to"]) == (4, "rollback", "3", "2")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rollback", "--version", "1", "--reason", "x"], "--rollback goes back to the previous champion"),
        (
            ["--version", "1", "--reason", "x", "--force-reason", "y"],
            "--force-reason is only meaningful with --force",
        ),
        # --force needs its reason whatever the gate said (the help always said so)
        (["--version", "1", "--reason", "x", "--force"], "--force needs --force-reason"),
        (
            ["--version", "1", "--reason", "x", "--force", "--force-reason", "  "],
            "--force needs --force-reason",
        ),
        (
            ["--version", "1", "--reason", "x", "--model-name", "no-such-model"],
            "no-such-model has no version '1' in sqlite:",
        ),
    ],
)
def test_promote_command_option_errors(
    prep: rh.Prepared, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert rh.registry_cli(["promote", *argv]) == 2
    assert message in capsys.readouterr().err


def test_promote_command_requires_a_reason(prep: rh.Prepared, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        rh.registry_cli(["promote", "--version", "1"])
    assert exit_info.value.code == 2
    assert "--reason" in capsys.readouterr().err


def test_a_model_from_the_leaky_negative_control_can_never_be_champion(
    prep: rh.Prepared, client: MlflowClient
) -> None:
    from melanoma_mlops.artifacts import LEAKY_TAG
    from melanoma_mlops.registry.guard import LeakyRunError

    version, parent = rh.register(prep, "good", "leaky")
    client.set_tag(parent, LEAKY_TAG, "true")  # as the ablation tags its leaky trials

    with pytest.raises(LeakyRunError, match="negative control"):
        rh.gate(prep, "good", "leaky", version, parent)
    with pytest.raises(LeakyRunError):
        promotion.promote("leaky", version, reason="x", force=True, force_reason="no")
    assert "champion" not in aliases(client, "leaky")


# ---------------------------------------------------------------------------------------------
# a gate that does not promote on luck
# ---------------------------------------------------------------------------------------------


def test_a_registered_tiny_run_with_11_test_images_is_never_auto_promoted(
    prep: rh.Prepared, client: MlflowClient
) -> None:
    from melanoma_mlops.steps.promote import gate_step

    test = pd.read_csv(prep.manifests["test"], dtype={"sha256": str})
    tiny = pd.concat([test[test["label"] == 1].head(3), test[test["label"] == 0].head(8)])
    tiny_csv = prep.root / "test_tiny.csv"
    tiny.to_csv(tiny_csv, index=False)
    version, parent = rh.register(prep, "good", "tiny")

    decision = gate_step(  # the production limits, as a real run would use them
        str(prep.variants["good"].eval_dir), str(tiny_csv), parent_run_id=parent,
        candidate_version=version, gate=GateConfig(model_name="tiny"),
        training=TrainingConfig(image_size=rh.SIZE, batch_size=16),
    )  # fmt: skip

    assert decision["action"] == "held" and not decision["passed"] and not decision["promoted"]
    assert decision["n_test"] == 11
    assert decision["reason"].startswith(
        "held: too few test images to promote automatically (3 malignant < 30, 8 benign < 30)"
    )
    assert aliases(client, "tiny") == {"challenger": "1"}
    tags = client.get_model_version("tiny", "1").tags
    assert tags["gate.action"] == "held" and tags["gate.n_test_positive"] == "3"
    assert "HELD - not promoted automatically (too few test images" in gate_markdown(decision)
    with pytest.raises(GateError, match="gate failed"):
        promotion.promote("tiny", None, reason="looks perfect")


def test_a_lower_bound_under_its_limit_refuses_with_the_interval_in_the_record(
    prep: rh.Prepared, client: MlflowClient
) -> None:
    first = rh.register_and_gate(prep, "good", "bound")
    # A check whose interval reaches below its estimate: put the limit between the two.
    check = next(
        c for c in first["checks"] if c["interval"] is not None and c["interval"][0] < c["estimate"] - 0.01
    )
    limit = round((check["interval"][0] + check["estimate"]) / 2, 4)

    decision = rh.register_and_gate(prep, "good", "bound", **{f"min_{check['name']}": limit})

    (failed,) = [c for c in decision["checks"] if not c["passed"]]
    assert failed["name"] == check["name"] and failed["estimate"] >= limit > failed["value"]
    assert decision["action"] == "rejected" and decision["reason"].startswith("failed: ")
    assert f"lower bound {failed['value']:.4f} < {limit}" in decision["reason"]
    low, high = decision["candidate"][f"{check['name']}_ci"]
    tags = client.get_model_version("bound", "2").tags
    assert float(tags[f"gate.candidate_{check['name']}_ci_low"]) == pytest.approx(low, abs=1e-6)
    assert float(tags[f"gate.candidate_{check['name']}_ci_high"]) == pytest.approx(high, abs=1e-6)
    assert f"[95% CI {low:.4f}, {high:.4f}]" in gate_markdown(decision)
    assert decision["bootstrap"]["n_boot"] == 1000
    assert aliases(client, "bound")["champion"] == "1"


def test_the_champion_comparison_is_a_paired_bootstrap_on_the_same_groups() -> None:
    """Scores that rank the images identically differ by exactly 0 on every resample only when both
    models are recomputed on the same resampled groups; an unpaired bootstrap would give a wide interval."""
    import numpy as np

    from melanoma_mlops.registry import scoring

    rng = np.random.default_rng(0)
    y = np.r_[np.ones(20), np.zeros(60)].astype(int)
    a = rng.random(80) + 0.4 * y
    groups = np.repeat(np.arange(40), 2).astype(str)
    delta, ci = scoring.paired_auc_difference(y, a, a**3, groups)
    assert delta == pytest.approx(0.0) and ci == (pytest.approx(0.0), pytest.approx(0.0))
    delta, (low, high) = scoring.paired_auc_difference(y, a + 0.6 * y, a, groups)
    assert 0 < low < delta < high  # the same images with a stronger signal: clearly better
