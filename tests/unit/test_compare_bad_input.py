"""``melanoma-mlops compare``'s bad input, on a hand-made MLflow store (issue 22): an unknown run, one
run, another experiment's run, a step's run, a run without test metrics, an ambiguous name, a run
given twice each get one ``error:`` line (exit status 2), and a store without the experiment is
read without creating it. In process, no training: the two real runs are
tests/integration/test_compare_runs.py."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from melanoma_mlops import EXPERIMENT_NAME
from melanoma_mlops.artifacts import PARENT_TAG
from melanoma_pipelines import cli


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
