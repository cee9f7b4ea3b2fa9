"""The ablation as one KFP pipeline under kfp.local, end to end (split from
tests/unit/test_ablation.py: a unit test starts no process, and kfp.local runs each step as one)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from melanoma_mlops import tracking
from melanoma_mlops.experiments.ablation import design, report
from melanoma_mlops.registry import guard as leakage
from melanoma_pipelines import cli

TINY = [
    "--image-size",
    "32",
    "--stage1-epochs",
    "1",
    "--stage2-epochs",
    "1",
    "--single-stage-epochs",
    "1",
    "--batch-size",
    "16",
    "--patience",
    "1",
    "--weights",
    "none",
]


@pytest.mark.integration
def test_tiny_ablation_run(
    demo_dir: Path, mlflow_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both protocols x both variants at one seed, as one KFP pipeline (ParallelFor) under kfp.local:
    every branch of the If/Elif/Else runs end to end once, the LEAKY (negative control) included.
    """
    try:
        code = cli.main(
            [
                "ablation",
                "--data",
                str(demo_dir),
                "--seeds",
                "0",
                "--protocol",
                "both",
                "--run-name",
                "tiny-ablation",
                "--parallelism",
                "2",
                "--pipeline-root",
                str(tmp_path / "local_outputs"),
                "--report-dir",
                str(tmp_path / "report"),
                *TINY,
            ]
        )
    finally:
        shutil.rmtree(tmp_path / "local_outputs", ignore_errors=True)  # ~100 MB of models per trial
    assert code == 0

    comparison = json.loads((tmp_path / "report" / "ablation" / report.REPORT_JSON).read_text())
    assert [a["arm"] for a in comparison["arms"]] == [
        "honest:two_stage",
        "honest:single_stage",
        "leaky:two_stage",
        "leaky:single_stage",
    ]
    assert len(comparison["trials"]) == 4
    for t in comparison["trials"]:
        assert (t["test_copies_in_train"] > 0) == t["leaky"], t["trial"]
    paired = comparison["paired"][0]
    assert paired["seeds"] == [0] and paired["metrics"]["auc_roc"]["stat"]["n"] == 1
    assert {b["a"] for b in comparison["leak_inflation"]} == {"leaky:two_stage", "leaky:single_stage"}
    markdown = (tmp_path / "report" / "ablation" / report.REPORT_MD).read_text()
    assert "## Paired differences two_stage − single_stage (honest protocol)" in markdown
    assert "## Headline: the published protocol's inflation of test AUC" in markdown
    for t in comparison["trials"]:
        assert (t["test_linked_in_train"] >= t["test_copies_in_train"] > 0) == t["leaky"], t["trial"]
    assert (tmp_path / "report" / "ablation" / report.PLOT_PNG).stat().st_size > 0
    document = (tmp_path / "report" / "ablation.md").read_text()  # what --report-dir docs writes
    assert f"![Test AUC per arm and seed](ablation/{report.PLOT_PNG})" in document
    assert "### Headline" in document and "tiny-ablation" not in document.split("## Results", 1)[0]
    assert "## Leak inflation: LEAKY (negative control) − honest (two_stage, same seed)" in markdown

    client = MlflowClient()
    exp = client.get_experiment_by_name(design.ABLATION_EXPERIMENT)
    runs = client.search_runs([exp.experiment_id])
    parent = next(
        r for r in runs if r.info.run_name == "tiny-ablation" and r.data.tags.get("pipeline") == "ablation"
    )
    assert parent.info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "ablation")} >= {
        f"ablation/{name}"
        for name in (report.REPORT_MD, report.REPORT_CSV, report.REPORT_JSON, report.TRIALS_CSV)
    }
    assert "paired.honest.two_stage-minus-honest.single_stage/auc_roc_mean" in parent.data.metrics
    trials = [
        r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id and "ablation.arm" in r.data.tags
    ]
    assert sorted(r.info.run_name for r in trials) == [
        "LEAKY (negative control) single_stage seed=0",
        "LEAKY (negative control) two_stage seed=0",
        "single_stage seed=0",
        "two_stage seed=0",
    ]
    for trial in trials:
        leaky = trial.info.run_name.startswith("LEAKY")
        assert trial.info.status == "FINISHED" and trial.data.tags["leaky"] == str(leaky).lower()
        assert (trial.data.metrics["leak/test_copies_in_train"] > 0) == leaky
        assert "test/auc_roc" in trial.data.metrics
        names = {
            r.info.run_name for r in tracking.descendants(client, trial.info.run_id, [exp.experiment_id])
        }
        training = (
            {"stage1", "stage2"} if trial.data.tags["ablation.variant"] == "two_stage" else {"single_stage"}
        )
        prepare = {"leaky_split"} if trial.data.tags["leaky"] == "true" else {"split", "oversample"}
        assert names == {*prepare, "evaluate", "summarize", *training}
        if leaky:
            with pytest.raises(leakage.LeakyRunError):
                leakage.assert_registrable(trial.info.run_id)
        else:
            leakage.assert_registrable(trial.info.run_id)
    single = next(r for r in trials if r.info.run_name == "single_stage seed=0")
    assert single.data.params["single_stage_lr"] == "0.0001"
    assert client.search_registered_models() == []
    assert client.search_model_versions() == []
