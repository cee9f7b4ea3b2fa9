"""``melanoma-mlops compare`` on MLflow stores (issue 22): on the two real tiny pipeline runs that differ
in ``--stage2-lr`` (conftest ``two_pipeline_runs``) it prints the settings that differ, the test
metrics with their intervals side by side, the paired differences and a verdict, and logs the same
as an HTML page on the newest run; bad input (unknown run, one run, another experiment's run, a step
run, a run without test metrics, an ambiguous name) gets one ``error:`` line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from melanoma_mlops import EXPERIMENT_NAME
from melanoma_mlops.artifacts import PARENT_TAG
from melanoma_pipelines import cli

pytestmark = pytest.mark.integration


# ------------------------------------------------------------------ bad input, on a hand-made store


@pytest.fixture(scope="module")
def made_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    """Parent runs as the pipeline tags them, without training anything: one finished with test
    metrics, one that failed before evaluate, two sharing a name, a step run, an ablation run."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('compare_store') / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment(EXPERIMENT_NAME)
    ids = {}
    for key, name, metrics, status in (
        ("done", "two-stage seed=1", {"test/auc_roc": 0.8}, "FINISHED"),
        ("failed", "two-stage seed=2", {}, "FAILED"),
        ("twin1", "two-stage twin", {"test/auc_roc": 0.7}, "FINISHED"),
        ("twin2", "two-stage twin", {"test/auc_roc": 0.7}, "FINISHED"),
    ):
        run = client.create_run(exp, run_name=name, tags={"pipeline": "two-stage"})
        for metric, value in metrics.items():
            client.log_metric(run.info.run_id, metric, value)
        client.set_terminated(run.info.run_id, status)
        ids[key] = run.info.run_id
    step = client.create_run(exp, run_name="evaluate", tags={PARENT_TAG: ids["done"], "step": "evaluate"})
    ids["step"] = step.info.run_id
    other = client.create_experiment("melanoma-ablation")
    ids["ablation"] = client.create_run(other, run_name="ablation", tags={"pipeline": "ablation"}).info.run_id
    return uri, ids


@pytest.fixture
def store(made_store, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    uri, ids = made_store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return ids


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compare", "no such run", "{done}"], "error: no pipeline run 'no such run' (by id or name)"),
        (["compare", "{done}"], "error: compare needs two or more runs (ids or names); got 1"),
        (
            ["compare", "{done}", "{ablation}"],
            "belongs to experiment 'melanoma-ablation', not 'melanoma-two-stage'",
        ),
        (
            ["compare", "{done}", "{step}"],
            "is the 'evaluate' step of pipeline run {done}: pass the pipeline run",
        ),
        (
            ["compare", "{done}", "two-stage seed=2"],
            "has no test metrics: it stopped before its evaluate step",
        ),
        (["compare", "{done}", "two-stage twin"], "2 runs are named 'two-stage twin' ({twin2}, {twin1})"),
        (["compare", "{done}", "{done}"], "is given twice"),
        (["compare", "--last", "1"], "--last 1: compare needs two or more runs"),
        (["compare", "{done}", "{twin1}", "--last", "2"], "give run ids/names or --last N, not both"),
    ],
)
def test_bad_input_gets_one_error_line(store, capsys, argv, message) -> None:
    assert cli.main([a.format(**store) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert message.format(**store) in err


def test_without_the_experiment_it_says_where_it_looked(mlflow_store, capsys) -> None:
    assert cli.main(["compare", "--last", "2"]) == 2
    assert "no experiment 'melanoma-two-stage' in sqlite:///" in capsys.readouterr().err
    assert (
        MlflowClient(mlflow_store).get_experiment_by_name(EXPERIMENT_NAME) is None
    )  # a read creates nothing


# ------------------------------------------------------------------ two real runs


@pytest.fixture
def runs(two_pipeline_runs: dict, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", two_pipeline_runs["uri"])
    return two_pipeline_runs


def test_two_runs_differing_in_one_option_get_the_table_the_verdict_and_the_page(runs, capsys) -> None:
    base, changed = runs["base"], runs["changed"]
    assert cli.main(["compare", base.info.run_name, changed.info.run_id]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()

    assert any(line.split()[:3] == ["stage2_lr", "1e-05", "3e-05"] for line in lines), out
    for label, run in (("A", base), ("B", changed)):
        m = run.data.metrics
        assert (
            f"{m['test/auc_roc']:.3f} [{m['test/auc_roc_ci_low']:.3f}, {m['test/auc_roc_ci_high']:.3f}]"
            in out
        )
        assert any(line.split()[:2] == [label, run.info.run_id[:12]] for line in lines)
    auc = next(line for line in lines if line.split()[:1] == ["auc_roc"])
    assert len(auc.split("[")) == 4  # A's interval, B's, the paired difference's
    n_test = int(float(base.data.params["split/test_images"]))
    assert f"test set: B vs A: the same {n_test} test images" in out
    verdict = next(line for line in lines if line.startswith("verdict: "))
    assert "AUC" in verdict and (
        "better" in verdict or "worse" in verdict or "cannot be told apart" in verdict
    )

    page = f"compare/A-{base.info.run_id[:8]}_vs_B-{changed.info.run_id[:8]}.html"
    assert f"logged on run B (the newest): {page}" in out
    client = MlflowClient(runs["uri"])
    text = Path(client.download_artifacts(changed.info.run_id, page)).read_text(encoding="utf-8")
    assert verdict.removeprefix("verdict: ").split(";")[0].replace("'", "&#x27;") in text
    assert "stage2_lr" in text and "<script" not in text


def test_json_for_scripts(runs, capsys) -> None:
    assert cli.main(["compare", "--last", "2", "--json", "--no-log"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in data["runs"]] == [runs["base"].info.run_id, runs["changed"].info.run_id]
    assert data["params"]["stage2_lr"] == {"A": "1e-05", "B": "3e-05"}
    (pairing,) = data["pairings"]
    assert pairing["paired"] and pairing["n_images"] == data["runs"][0]["n_test"]
    auc = pairing["differences"]["auc_roc"]
    b, a = (data["metrics"]["auc_roc"][x]["value"] for x in "BA")
    assert auc["delta"] == pytest.approx(b - a) and auc["ci_low"] <= auc["ci_high"]
    assert data["logged"] is None and "compare-runs" in data["compare_page"]
