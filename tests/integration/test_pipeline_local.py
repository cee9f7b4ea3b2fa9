"""The whole DAG under kfp.local on a tiny generated dataset, and what MLflow holds afterwards."""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from tiny_run import TINY, TinyRun

from melanoma_mlops import EXPERIMENT_NAME, MODEL_NAME
from melanoma_pipelines import cli
from melanoma_pipelines.dag import TASK_ORDER

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pipeline_run(tiny_run: TinyRun):
    """The session's tiny run (tests/conftest.py), its folder and store entered."""
    import mlflow
    from local_store import in_local_store

    with in_local_store(tiny_run.work) as uri:
        mlflow.set_tracking_uri(uri)
        yield tiny_run.code, tiny_run.work


def _runs(client: MlflowClient) -> tuple:
    exp = client.get_experiment_by_name(EXPERIMENT_NAME)
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if r.info.run_name == "tiny")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, children


def test_run_succeeds_with_one_nested_run_per_step(pipeline_run) -> None:
    code, _ = pipeline_run
    assert code == 0
    parent, children = _runs(MlflowClient())
    assert parent.info.status == "FINISHED"
    assert sorted(r.info.run_name for r in children) == sorted(TASK_ORDER)
    assert all(r.info.status == "FINISHED" for r in children)


def test_every_hyperparameter_and_stage_prefixed_epoch_metrics_are_logged(pipeline_run) -> None:
    client = MlflowClient()
    parent, children = _runs(client)
    p = parent.data.params
    assert p["stage1_lr"] == "0.001" and p["stage2_lr"] == "1e-05" and p["weights"] == "none"
    assert p["image_size"] == "32" and p["seed"] == "42" and p["threshold_rule"] == "sensitivity"
    history = client.get_metric_history(parent.info.run_id, "stage1/val_auc")
    assert [m.step for m in history] == [1, 2]  # epochs are counted from 1, as on the console
    assert 1 <= parent.data.metrics["stage1/best_epoch"] <= 2
    assert client.get_metric_history(parent.info.run_id, "stage2/loss")
    m = parent.data.metrics
    for key in (
        "test/auc_roc",
        "test/sensitivity",
        "test/specificity",
        "test/f1",
        "threshold",
        "test/auc_roc_ci_low",
    ):
        assert key in m, key
    assert m["oversample/after_benign"] == m["oversample/after_malignant"]
    # Bookkeeping counts stay on the step runs (params on the parent): its metrics are results.
    assert not any(k.startswith(("data/", "split/", "leakage/")) for k in m)
    assert parent.data.params["split/test_images"] and parent.data.tags["leakage_check"] == "passed"
    oversample = next(r for r in children if r.info.run_name == "oversample")
    assert oversample.data.metrics["leakage/leak_sha256"] == 0
    # The MLflow outage window in force (a runtime setting, not a pipeline parameter) is on record,
    # on the parent and on each step run (docs/faults.md).
    window = float(os.environ.get("MELANOMA_MLFLOW_OUTAGE_WINDOW", "300"))
    for run in (parent, *children):
        assert float(run.data.params["mlflow_outage_window_s"]) == window, run.info.run_name


def test_registered_challenger_loads_and_predicts(pipeline_run, demo_dir: Path) -> None:
    import mlflow

    client = MlflowClient()
    version = client.get_model_version_by_alias(MODEL_NAME, "challenger")
    parent, _ = _runs(client)
    assert version.tags["pipeline_run_id"] == parent.info.run_id
    # The promote step gated it (tiny training may or may not pass): the decision is recorded.
    assert version.tags["gate.passed"] in ("true", "false")
    assert version.tags["gate.action"]
    assert version.tags["data_fingerprint"] == parent.data.tags["data.fingerprint"]
    assert float(version.tags["test_auc_roc"]) == pytest.approx(parent.data.metrics["test/auc_roc"], abs=1e-5)
    assert "Intended use" in version.description or "intended use" in version.description.lower()
    loaded = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@challenger")
    images = sorted(demo_dir.glob("*/*.png"))[:3]
    out = loaded.predict(pd.DataFrame({"image": [p.read_bytes() for p in images]}))
    assert list(out.columns[:2]) == ["probability", "label"]
    assert out["probability"].between(0, 1).all()
    threshold = float(version.tags["threshold"])
    assert (out["label"] == (out["probability"] >= threshold).astype(int)).all()


def test_artifacts_hold_the_reports(pipeline_run) -> None:
    client = MlflowClient()
    _, children = _runs(client)
    by_step = {r.info.run_name: r.info.run_id for r in children}
    names = lambda run, path: {a.path for a in client.list_artifacts(by_step[run], path)}  # noqa: E731
    assert "data_docs/index.html" in names("validate", "data_docs")
    assert "data/manifest.csv" in names("validate", "data") or any(
        "manifest" in n for n in names("validate", "data")
    )
    assert {"evaluation/roc.png", "evaluation/confusion.png"} <= names("evaluate", "evaluation")
    assert "gradcam/gradcam_grid.png" in names("gradcam", "gradcam")
    assert "model_card.md" in {a.path for a in client.list_artifacts(by_step["register"])}


def test_model_card_names_the_real_counts_and_metrics_of_the_run(pipeline_run) -> None:
    from melanoma_mlops.data import manifest

    client = MlflowClient()
    parent, _ = _runs(client)
    version = client.get_model_version_by_alias(MODEL_NAME, "challenger")
    card = version.description
    assert "synthetic demo images" in card
    run_dir = next((pipeline_run[1] / "local_outputs").glob("*/split"))
    test = manifest.read(run_dir / "test")
    counts = manifest.class_counts(test)
    assert f"| test | {counts['benign']} | {counts['malignant']} | {len(test)} |" in card
    assert f"{parent.data.metrics['test/auc_roc']:.3f}" in card
    assert parent.data.tags["data.fingerprint"] in card
    assert f"| train_oversampled | {int(parent.data.metrics['oversample/after_benign'])} |" in card
    # class folders carry no patient id: said on the card, the run and the version
    assert "- **Patient ids:** absent: the data carry no patient id" in card
    assert parent.data.tags["data.patient_id"] == "absent"
    assert version.tags["data_patient_id"] == "absent"
    assert "lesions/patients" not in card


def test_bad_data_stops_with_one_clear_message_and_registers_nothing(
    demo_dir: Path, tmp_path: Path, mlflow_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = Path(shutil.copytree(demo_dir, tmp_path / "data"))
    broken = data / "malignant" / "synth_corrupt.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    code = cli.main(["run", "--data", str(data), *TINY])
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") or any(line.startswith("error: ") for line in err)
    message = "\n".join(err[next(i for i, line in enumerate(err) if line.startswith("error: ")) :])
    assert "synth_corrupt.png" in message and "corrupt or truncated" in message
    assert "Traceback" not in message
    assert MlflowClient().search_registered_models() == []


def test_the_parent_run_holds_what_users_compare(pipeline_run) -> None:
    """Issue 12: model-development experiment, a note with the results, the key artifacts, the data."""
    from melanoma_mlops import tracking, ui_links

    client = MlflowClient()
    exp = client.get_experiment_by_name(EXPERIMENT_NAME)
    assert exp.tags[tracking.EXPERIMENT_KIND_TAG] == tracking.EXPERIMENT_KIND
    parent, _ = _runs(client)
    note = parent.data.tags[tracking.NOTE_TAG]
    m = parent.data.metrics
    assert (
        f"AUC {m['test/auc_roc']:.3f} [{m['test/auc_roc_ci_low']:.3f}, {m['test/auc_roc_ci_high']:.3f}]"
        in note
    )
    assert f"test {int(float(parent.data.params['split/test_images']))} /" in note
    assert "| gate |" in note and f"versions/{parent.data.tags['model.version']}" in note
    paths = {a.path for a in client.list_artifacts(parent.info.run_id)}
    paths |= {
        a.path
        for d in ("evaluation", "gradcam", "promotion")
        for a in client.list_artifacts(parent.info.run_id, d)
    }
    assert {"model_card.md", "data_docs.html", "evaluation/roc.png", "evaluation/pr.png"} <= paths
    assert {"gradcam/gradcam_grid.png", "promotion/gate.md"} <= paths
    (dataset,) = [d.dataset for d in parent.inputs.dataset_inputs]
    assert dataset.digest == parent.data.tags["data.fingerprint"][:36]
    # Issue 22: the parent lists the registered model as its output (its page shows the version);
    # the experiment carries the runs table's shared view with the test metrics as columns.
    version = client.get_model_version("melanoma-resnet50", parent.data.tags["model.version"])
    (output,) = parent.outputs.model_outputs
    assert version.source == f"models:/{output.model_id}"
    assert exp.tags.items() >= ui_links.headline_view_tags().items()
    # No checkpoint is left once the stages finished; no run is left RUNNING.
    assert not any(k.startswith("checkpoint.") for k in parent.data.tags)
    assert all(r.info.status != "RUNNING" for r in client.search_runs([exp.experiment_id]))


def test_the_test_set_is_sliced_by_subgroup_on_the_evaluate_and_parent_runs(
    pipeline_run, tmp_path: Path
) -> None:
    """Issue 20 item 1: slice metrics with their interval bounds, subgroups.csv and the forest plot
    on both runs, every test image in one slice of each subgroup (missing values: 'unknown')."""
    from melanoma_mlops.data import manifest

    client = MlflowClient()
    parent, children = _runs(client)
    evaluate = next(r for r in children if r.info.run_name == "evaluate")
    n_test = len(manifest.read(next((pipeline_run[1] / "local_outputs").glob("*/split")) / "test"))
    for run in (parent, evaluate):
        m = run.data.metrics
        for family in ("sex", "age_band", "anatom_site"):
            counts = [v for k, v in m.items() if k.startswith(f"slice/{family}.") and k.endswith("/n")]
            assert sum(counts) == n_test, (family, counts)  # no test image dropped
        measured = [k[: -len("/auc_roc")] for k in m if k.startswith("slice/") and k.endswith("/auc_roc")]
        assert measured, sorted(m)
        for base, figure in itertools.product(measured, ("auc_roc", "sensitivity", "specificity")):
            key = f"{base}/{figure}"
            assert m[f"{key}_ci_low"] <= m[key] <= m[f"{key}_ci_high"], key
        names = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
        assert {"evaluation/subgroups.csv", "evaluation/subgroups_forest.png"} <= names
    table = pd.read_csv(
        client.download_artifacts(parent.info.run_id, "evaluation/subgroups.csv", str(tmp_path)),
        keep_default_na=False,
    )
    assert table["subgroup"].iloc[0] == "all" and table["n"].iloc[0] == n_test
    assert {"sex", "age_band", "anatom_site"} == set(table["subgroup"]) - {"all"}
    assert set(table["status"]) <= {"measured", "insufficient"} and "measured" in set(table["status"])


def test_the_card_shows_performance_by_subgroup_and_what_the_data_lack(pipeline_run) -> None:
    card = MlflowClient().get_model_version_by_alias(MODEL_NAME, "challenger").description
    section = card[card.index("## Performance by subgroup") :]
    assert "| Subgroup | Images | Malignant | ROC AUC (95% CI) |" in section
    assert "| sex = " in section and "| age_band = " in section and "| anatom_site = " in section
    assert "no skin-tone information: performance across skin tones unknown" in section
    assert "no device information" in section
