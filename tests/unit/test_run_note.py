"""The parent run's description (issue 12): data, split sizes, test metrics with CIs, the gate, the model."""

from __future__ import annotations

from melanoma_mlops import run_note

PARAMS = {
    "data": "/data/isic",
    "data/images": "600",
    "data/benign": "480",
    "data/malignant": "120",
    "split/train_images": "420",
    "split/train_groups": "400",
    "split/val_images": "90",
    "split/val_groups": "88",
    "split/test_images": "90",
    "split/test_groups": "87",
}
METRICS = {
    "threshold": 0.4321,
    "test/auc_roc": 0.9123,
    "test/auc_roc_ci_low": 0.871,
    "test/auc_roc_ci_high": 0.948,
    "test/sensitivity": 0.9,
    "test/sensitivity_ci_low": 0.8,
    "test/sensitivity_ci_high": 0.97,
}
TAGS = {
    "data.fingerprint": "abcdef0123456789",
    "data.layout": "isic",
    "leakage_check": "passed",
    "model.name": "melanoma-resnet50",
    "model.version": "3",
}


def test_the_note_says_what_a_person_compares() -> None:
    decision = {"action": "promoted", "reason": "passed", "champion": {"version": "2", "auc": 0.9011}}
    note = run_note.render("two-stage lr2=3e-05", PARAMS, METRICS, TAGS, decision)
    first = note.splitlines()[0]
    assert first.startswith(
        "**two-stage lr2=3e-05**: test AUC 0.912 [0.871, 0.948], sensitivity 0.900 [0.800, 0.970]"
    )
    assert "at threshold 0.4321" in first
    assert "600 images (480 benign, 120 malignant)" in note and "fingerprint `abcdef012345`" in note
    assert "train 420 / 400 · val 90 / 88 · test 90 / 87" in note
    assert "| test AUC (95% CI) | 0.912 [0.871, 0.948] |" in note
    assert "**PROMOTED** (passed) · champion v2 on the same test set: AUC 0.901" in note
    assert "[melanoma-resnet50 version 3](#/models/melanoma-resnet50/versions/3)" in note


def test_missing_figures_read_as_unknown_not_as_a_crash() -> None:
    note = run_note.render("r", {}, {}, {})
    assert "metrics not recorded" in note and "? images" in note
