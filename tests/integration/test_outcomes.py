"""``melanoma-mlops outcomes`` as docs/monitoring.md shows it, on the tiny run's registered version:
images scored through the registered pyfunc into a prediction log, their biopsy results (the demo
generator's labels) by request id and by image hash plus one unknown id, joined and measured; the
run, the version's tags and the unmatched row checked against figures computed here from the log;
bad input refused with an `error:` and no run."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import readme_blocks
from local_store import in_local_store
from mlflow.tracking import MlflowClient
from tiny_run import TinyRun

from melanoma_mlops import MODEL_NAME
from melanoma_mlops.config import GateConfig
from melanoma_mlops.data import demo
from melanoma_mlops.evaluation.metrics import binary_metrics
from melanoma_mlops.monitoring.monitor import EXPERIMENT
from melanoma_mlops.monitoring.outcomes import GATED
from melanoma_mlops.serving import log_sink, prediction_log
from melanoma_pipelines import cli


@pytest.fixture(scope="module")
def work(tiny_run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of the tiny run's store (outcomes tags the version; tiny_run is read-only), its version
    made champion as `promote --force` would, as the documented command names it."""
    assert tiny_run.code == 0
    root = tmp_path_factory.mktemp("outcomes")
    shutil.copytree(tiny_run.work / "mlruns", root / "mlruns")
    with in_local_store(root):
        MlflowClient().set_registered_model_alias(MODEL_NAME, "champion", "1")
        yield root


def documented_argv() -> list[str]:
    return readme_blocks.documented_argv("docs/monitoring.md", "Outcomes: `melanoma-mlops outcomes`")


def test_outcomes_as_documented(work: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    images = work / "clinic"
    demo.generate(images, n=24, size=64, seed=11, layout="folder")
    files = sorted(images.glob("benign/*.png")) + sorted(images.glob("malignant/*.png"))
    monkeypatch.setenv(prediction_log.SOURCE_ENV, "test")
    monkeypatch.setenv(prediction_log.LOG_ENV, str(work / "prediction_log"))
    prediction_log.reset()
    try:
        model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
        model.predict(pd.DataFrame({"image": [p.read_bytes() for p in files]}))
        prediction_log.flush_active()
    finally:
        prediction_log.reset()
    log = log_sink.read_records(str(work / "prediction_log"), datetime.now(UTC) - timedelta(hours=1))
    assert len(log) == len(files)
    truth = {hashlib.sha256(p.read_bytes()).hexdigest(): int(p.parent.name == "malignant") for p in files}
    # Half the outcomes name the request id, half the image hash; one names a request never logged.
    rows = [
        {"request_id": r.request_id if k % 2 else "", "sha256": "" if k % 2 else r.image_sha256,
         "label": ("benign", "malignant")[truth[r.image_sha256]]}
        for k, r in enumerate(log.itertuples())
    ]  # fmt: skip
    rows.append({"request_id": "never-logged", "sha256": "", "label": "1"})
    pd.DataFrame(rows).to_csv(work / "biopsies.csv", index=False)

    code = cli.main(documented_argv())
    out, err = capsys.readouterr()
    expected = binary_metrics(
        [truth[h] for h in log["image_sha256"]], log["probability"], log["threshold"][0]
    )
    client = MlflowClient()
    tags = client.get_model_version(MODEL_NAME, "1").tags
    run = client.get_run(tags["outcomes.run_id"])
    assert run.info.experiment_id == client.get_experiment_by_name(EXPERIMENT).experiment_id  # not Default
    metrics = run.data.metrics
    for name in ("sensitivity", "specificity", "auc_roc"):
        assert metrics[name] == pytest.approx(expected[name])
        assert metrics[f"{name}_low"] <= metrics[name] <= metrics[f"{name}_high"]
    gate = GateConfig()
    below = (
        metrics["sensitivity_low"] < gate.min_sensitivity
        or metrics["specificity_low"] < gate.min_specificity
        or metrics["auc_roc_low"] < gate.min_auc
    )  # one window (everything was logged a minute ago), so `all` decides
    assert (code, tags["outcomes.flagged"]) == ((1, "true") if below else (0, "false")), out + err
    assert tags["outcomes.matched"] == str(len(files)) and tags["outcomes.unmatched"] == "1"
    assert f"{len(files)} of {len(files) + 1} outcomes matched" in out
    assert "1 outcome rows matched no prediction" in out and "request_id never-logged (line" in out
    assert ("lower bound under the gate's floor" in out) == below
    unmatched = client.download_artifacts(run.info.run_id, "unmatched_outcomes.csv", str(work))
    assert pd.read_csv(unmatched)["key"].tolist() == ["never-logged"]
    capsys.readouterr()  # MLflow's download progress bar, on stderr
    assert run.data.params["min_sensitivity"] == str(gate.min_sensitivity)
    # The tiny run's version was gated (held) with the default floors: read back from its gate tags.
    assert run.data.params["floors_from"] == GATED and "floors: " not in out

    # Bad input: an error naming the file and line, and no new run.
    runs = len(client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id]))
    argv = documented_argv()
    (work / "dup.csv").write_text(f"request_id,label\n{log.request_id[0]},1\n{log.request_id[0]},0\n")
    (work / "cols.csv").write_text("id,outcome\nx,1\n")
    for name, message in [
        ("missing.csv", "missing.csv: no such outcomes file"),
        ("cols.csv", "cols.csv: columns ['id', 'outcome']; an outcomes file needs `label`"),
        ("dup.csv", f"dup.csv: request_id {log.request_id[0]} appears on lines [2, 3]"),
    ]:
        assert cli.main([*argv[:1], name, *argv[2:]]) == 2
        assert capsys.readouterr().err.startswith(f"error: {message}")
    assert len(client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])) == runs
