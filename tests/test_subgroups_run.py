"""A tiny run of the whole DAG with ``--task melanoma`` on a generated ISIC export with sex, age and
site: it logs the figures by subgroup with their interval bounds, ``subgroups.csv`` and the forest
plot; the card has the subgroup section; every logged name and card table says melanoma / not
melanoma; the Data Docs page lists the excluded rows."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from melanoma_mlops import EXPERIMENT_NAME, MODEL_NAME
from melanoma_pipelines import cli

pytestmark = pytest.mark.integration

TINY = ["--image-size", "32", "--stage1-epochs", "1", "--stage2-epochs", "1", "--batch-size", "16"]
TINY += ["--gradcam-samples", "2", "--patience", "1", "--weights", "none"]
# The tiny set's subgroups are small: judge slices from 2 cases of each class (default 5).
SLICES = ["--slice-min-positives", "2", "--slice-min-negatives", "2"]


@pytest.fixture(scope="module")
def melanoma_run(tmp_path_factory: pytest.TempPathFactory):
    import mlflow
    from local_store import in_local_store

    from melanoma_mlops.data import demo

    work = tmp_path_factory.mktemp("subgroups")
    data = work / "isic"
    demo.generate(data, n=240, size=48, malignant_share=0.35, seed=5)
    with (data / "metadata.csv").open("a", newline="") as fh:  # two rows the label policy excludes
        writer = csv.writer(fh)
        header = next(csv.reader((data / "metadata.csv").open()))
        for k in range(2):
            row = dict.fromkeys(header, "")
            row |= {"isic_id": f"ISIC_8{k:06d}", "diagnosis_1": "Indeterminate", "lesion_id": f"IL_8{k}"}
            writer.writerow([row[h] for h in header])
    with in_local_store(work) as uri:
        try:
            argv = ["run", "--data", str(data), "--task", "melanoma", "--run-name", "sliced", *TINY, *SLICES]
            code = cli.main(argv)
            mlflow.set_tracking_uri(uri)
            yield code, work
        finally:
            shutil.rmtree(work / "local_outputs", ignore_errors=True)


def _runs(client: MlflowClient):
    exp = client.get_experiment_by_name(EXPERIMENT_NAME)
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if r.info.run_name == "sliced")
    steps = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    return parent, steps


def test_the_run_logs_slice_metrics_with_interval_bounds_on_both_runs(melanoma_run) -> None:
    code, _ = melanoma_run
    assert code == 0
    parent, steps = _runs(MlflowClient())
    for run in (parent, steps["evaluate"]):
        m = run.data.metrics
        sliced = {k for k in m if k.startswith("slice/")}
        for family in ("sex", "age_band", "anatom_site"):
            assert any(k.startswith(f"slice/{family}.") and k.endswith("/n") for k in sliced), family
        measured = [k.removesuffix("/auc_roc") for k in sliced if k.endswith("/auc_roc")]
        assert measured, sorted(sliced)
        for base in measured:
            low, high = m.get(f"{base}/auc_roc_ci_low"), m.get(f"{base}/auc_roc_ci_high")
            if low is not None:
                assert low <= m[f"{base}/auc_roc"] <= high
        assert any(f"{base}/sensitivity_ci_low" in m for base in measured)


def test_subgroups_csv_and_forest_plot_are_artifacts_of_both_runs(melanoma_run, tmp_path: Path) -> None:
    client = MlflowClient()
    parent, steps = _runs(client)
    for run_id in (parent.info.run_id, steps["evaluate"].info.run_id):
        names = {a.path for a in client.list_artifacts(run_id, "evaluation")}
        assert {"evaluation/subgroups.csv", "evaluation/subgroups_forest.png"} <= names
    local = client.download_artifacts(parent.info.run_id, "evaluation/subgroups.csv", str(tmp_path))
    table = pd.read_csv(local, keep_default_na=False)
    assert table["subgroup"].iloc[0] == "all"
    assert {"sex", "age_band", "anatom_site"} <= set(table["subgroup"])
    assert set(table["status"]) <= {"measured", "insufficient"}


def test_the_card_has_the_subgroup_section_and_the_task_class_names(melanoma_run) -> None:
    client = MlflowClient()
    card = client.get_model_version_by_alias(MODEL_NAME, "challenger").description
    section = card[card.index("## Performance by subgroup") :]
    assert "| Subgroup | Images | Melanoma | ROC AUC (95% CI) |" in section
    assert "| sex = " in section and "| age_band = " in section and "| anatom_site = " in section
    assert "no skin-tone information: performance across skin tones unknown" in section
    assert "| Split | Not melanoma | Melanoma | Total | Melanoma share | Groups |" in card
    assert "| | Predicted not melanoma | Predicted melanoma |" in card


def test_logged_names_say_melanoma_and_not_melanoma(melanoma_run) -> None:
    parent, steps = _runs(MlflowClient())
    names = [*parent.data.params, *parent.data.metrics, *steps["oversample"].data.metrics]
    assert {"data/not_melanoma", "data/melanoma", "split/test_melanoma"} <= set(parent.data.params)
    assert (
        parent.data.metrics["oversample/after_not_melanoma"]
        == parent.data.metrics["oversample/after_melanoma"]
    )
    assert not [n for n in names if n.startswith(("data/", "split/", "oversample/")) and "benign" in n]
    assert not [n for n in names if n.startswith(("data/", "split/", "oversample/")) and "malignant" in n]


def test_the_data_docs_page_lists_the_excluded_rows(melanoma_run, tmp_path: Path) -> None:
    client = MlflowClient()
    parent, _ = _runs(client)
    page = Path(client.download_artifacts(parent.info.run_id, "data_docs.html", str(tmp_path))).read_text()
    assert "Excluded by the label policy: 2 row(s)" in page
    assert "ISIC_8000000" in page and "ISIC_8000001" in page
