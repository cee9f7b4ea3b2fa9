"""With ``--task melanoma`` every heading, table and logged name uses the task's own class names:
BCC and SCC are "not melanoma" there, never "benign". Pure functions, no TensorFlow."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd
import pytest

from melanoma_mlops import run_note
from melanoma_mlops.artifacts import TASK_CLASSES, class_keys
from melanoma_mlops.data import describe, manifest, split
from melanoma_mlops.data.validation import ValidationOutcome


def _manifest(n: int = 60) -> pd.DataFrame:
    rows = []
    for i in range(n):
        rows.append(
            {
                "image_uri": f"/d/img{i}.jpg",
                "label": int(i % 4 == 0),
                "sha256": f"{i:064x}",
                "width": 64,
                "height": 64,
                "group_id": f"lesion:{i // 2}",
                "split": ("train", "train", "val", "test")[(i // 2) % 4],
            }
        )
    return pd.DataFrame(rows)


def test_class_keys_are_the_class_names_fit_for_logged_names() -> None:
    assert class_keys("malignant") == ("benign", "malignant")
    assert class_keys("melanoma") == ("not_melanoma", "melanoma")
    assert TASK_CLASSES["melanoma"] == ("not melanoma", "melanoma")


@pytest.mark.parametrize("task", ["malignant", "melanoma"])
def test_counts_splits_and_validation_counts_are_named_by_the_task(task: str) -> None:
    df = _manifest()
    negative, positive = class_keys(task)
    assert manifest.class_counts(df, task) == {negative: 45, positive: 15}
    summary = split.split_summary(df, task)
    assert {negative, positive, f"{positive}_share"} <= set(summary["test"])
    outcome = ValidationOutcome(True, df, summary={"task": task, "images": 60, "benign": 45, "malignant": 15})
    assert outcome.counts() == {"images": 60, negative: 45, positive: 15}


def test_with_task_melanoma_nothing_logged_says_benign_or_malignant() -> None:
    df = _manifest()
    names = {
        *(
            f"data/{k}"
            for k in ValidationOutcome(
                True, df, summary={"task": "melanoma", "benign": 1, "malignant": 2}
            ).counts()
        ),
        *(f"split/{s}_{k}" for s, d in split.split_summary(df, "melanoma").items() for k in d),
        *(f"oversample/after_{k}" for k in manifest.class_counts(df, "melanoma")),
    }
    assert (
        "data/not_melanoma" in names
        and "split/test_melanoma" in names
        and "oversample/after_melanoma" in names
    )
    assert not [n for n in names if re.search("benign|malignant", n)]


def test_the_card_counts_by_the_task_classes_read_from_the_oversample_metrics() -> None:
    df = _manifest()
    train, val, test = (df[df["split"] == s] for s in ("train", "val", "test"))
    metrics = {"oversample/after_not_melanoma": 20.0, "oversample/after_melanoma": 20.0}
    counts = describe.data_counts(train, val, test, metrics, "melanoma")
    assert set(counts["test"]) == {"not melanoma", "melanoma", "groups"}
    assert counts["train_oversampled"] == {"not melanoma": 20, "melanoma": 20}
    # The default task's names are unchanged (and its oversample metrics found).
    default = describe.data_counts(
        train, val, test, {"oversample/after_benign": 9, "oversample/after_malignant": 9}
    )
    assert default["train_oversampled"] == {"benign": 9, "malignant": 9}


def test_the_card_of_a_melanoma_model_names_its_classes_in_every_heading_and_table() -> None:
    from melanoma_mlops.evaluation.modelcard import render_model_card

    info = {
        "model": {"name": "melanoma-resnet50", "version": 2},
        "labels": {"task": "melanoma", "mapping": {"Malignant > Basal cell carcinoma": 0}, "composition": {}},
        "data": {
            "counts": {
                "train": {"not melanoma": 4321, "melanoma": 567, "groups": 3001},
                "test": {"not melanoma": 905, "melanoma": 129, "groups": 650},
            }
        },
        "operating_point": {"rule": "youden", "threshold": 0.3},
        "metrics": {
            "n": 1034,
            "prevalence": 0.125,
            "threshold": 0.3,
            "tn": 800,
            "fp": 105,
            "fn": 20,
            "tp": 109,
        },
    }
    card = render_model_card(info)
    assert "| Split | Not melanoma | Melanoma | Total | Melanoma share | Groups |" in card
    assert "| train | 4321 | 567 | 4888 | 11.6% | 3001 |" in card
    assert "| | Predicted not melanoma | Predicted melanoma |" in card
    assert "| **Not melanoma** |" in card and "| **Melanoma** |" in card
    assert "called melanoma when its score" in card and "melanoma share" in card
    # What remains of benign/malignant: the source mapping (BCC is malignant, and class 0 here) and
    # the task's own definition ("every other diagnosis, benign or malignant, is class 0").
    leftovers = [
        line
        for line in card.splitlines()
        if re.search(r"\b[Bb]enign\b|Predicted malignant|\*\*Malignant", line)
    ]
    allowed = ("Basal cell", "benign or malignant, is class 0")
    assert [line for line in leftovers if not any(a in line for a in allowed)] == []


def test_the_run_note_says_the_task_classes() -> None:
    params = {"task": "melanoma", "data/images": "600", "data/not_melanoma": "530", "data/melanoma": "70"}
    note = run_note.render("two-stage", params, {}, {})
    assert "600 images (530 not melanoma, 70 melanoma)" in note


def test_the_data_steps_of_a_melanoma_run_log_the_task_names_and_list_the_exclusions(
    tmp_path, mlflow_store: str
) -> None:
    """validate -> split -> oversample with ``--task melanoma`` on a tiny ISIC export (MLflow in
    process, no TensorFlow): every count the steps log on their runs and the parent says melanoma /
    not melanoma, and the Data Docs page lists the rows the label policy left out."""
    from mlflow.tracking import MlflowClient

    from melanoma_mlops.config import DataConfig
    from melanoma_mlops.data import demo
    from melanoma_mlops.steps.oversample import oversample_step
    from melanoma_mlops.steps.split import split_step
    from melanoma_mlops.steps.validate import validate_step

    data = tmp_path / "isic"
    demo.generate(data, n=120, size=32, malignant_share=0.35, seed=5)  # melanomas, BCC, SCC, naevi...
    with (data / "metadata.csv").open("a", newline="") as fh:  # two rows the label policy excludes
        header = next(csv.reader((data / "metadata.csv").open()))
        for k in range(2):
            row = dict.fromkeys(header, "") | {"isic_id": f"ISIC_8{k:06d}", "diagnosis_1": "Indeterminate"}
            csv.writer(fh).writerow([row[h] for h in header])
    cfg = DataConfig(task="melanoma", min_image_size=8)
    out = tmp_path / "out"
    docs, report = str(out / "docs"), str(out / "report.html")
    parent = validate_step(str(data), str(out / "manifest.csv"), docs, report, cfg=cfg)
    paths = [str(out / f"{s}.csv") for s in ("train", "val", "test")]
    split_step(str(out / "manifest.csv"), *paths, parent_run_id=parent, cfg=cfg, seed=0)
    oversample_step(*paths, str(out / "balanced.csv"), parent_run_id=parent, seed=0)

    client = MlflowClient()
    runs = client.search_runs([client.get_run(parent).info.experiment_id])
    named = [
        name
        for run in runs
        for name in (*run.data.params, *run.data.metrics)
        if name.startswith(("data/", "split/", "oversample/"))
    ]
    assert {"data/not_melanoma", "data/melanoma", "split/test_melanoma"} <= set(named)
    assert {"oversample/after_not_melanoma", "oversample/after_melanoma"} <= set(named)
    assert not [n for n in named if re.search("benign|malignant", n)]
    page = Path(client.download_artifacts(parent, "data_docs.html", str(tmp_path / "dl"))).read_text()
    assert "Excluded by the label policy: 2 row(s)" in page
    assert "ISIC_8000000" in page and "ISIC_8000001" in page
