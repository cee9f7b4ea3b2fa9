"""The model card shows what it is given, says "not measured" for what it is not, and never drops the
research-only disclaimer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from melanoma_mlops.errors import ConfigError
from melanoma_mlops.evaluation import bootstrap as mb
from melanoma_mlops.evaluation import metrics as mm
from melanoma_mlops.evaluation import thresholds as mt
from melanoma_mlops.evaluation.modelcard import NOT_MEASURED, render_model_card
from melanoma_mlops.evaluation.subgroups import SliceSpec, evaluate_slices


def full_info() -> dict:
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.25).astype(int)
    s = 1 / (1 + np.exp(-(rng.normal(size=400) + 2 * y - 1)))
    threshold = mt.choose_threshold(y, s, "sensitivity", target_sensitivity=0.9)
    boot = mb.bootstrap(y, s, threshold, groups=np.arange(400) // 2, n_boot=200)
    test = pd.DataFrame(
        {
            "image_uri": [f"i{i}.jpg" for i in range(400)],
            "group_id": [f"lesion:{i // 2}" for i in range(400)],
            "sex": np.where(np.arange(400) % 3 == 0, "female", "male"),
        }
    )
    by_subgroup = evaluate_slices(test, y, s, threshold, SliceSpec(), n_boot=100)
    return {
        "model": {
            "name": "melanoma-resnet50",
            "version": 7,
            "architecture": "ResNet50 + dropout + dense(1, sigmoid)",
            "input": "224x224x3 float32 RGB in [0, 255]",
            "lineage": {"mlflow_run_id": "abc123", "git_commit": "9dfbb67"},
        },
        "data": {
            "source": "s3://bucket/isic2020/",
            "layout": "isic-csv",
            "synthetic": False,
            "fingerprint": "f" * 64,
            "group_key": "lesion_id",
            "counts": {
                "train": {"benign": 4321, "malignant": 567, "groups": 3001},
                "val": {"benign": 911, "malignant": 123, "groups": 640},
                "test": {"benign": 905, "malignant": 129, "groups": 650},
            },
            "exclusions": {"unreadable image": 3, "smaller than 32 px": 11},
        },
        "protocol": {
            "description": "Stage 1 head only (lr 1e-3), Stage 2 all layers (lr 1e-5).",
            "hyperparameters": {"stage1_lr": 0.001, "stage2_lr": 1e-05, "batch_size": 32},
        },
        "operating_point": {"rule": "sensitivity", "threshold": threshold, "target_sensitivity": 0.9},
        "metrics": mm.binary_metrics(y, s, threshold),
        "ci": boot.ci,
        "bootstrap": {"n_boot": boot.n_boot, "alpha": boot.alpha, "unit": boot.unit, "n_units": boot.n_units},
        "calibration": mm.calibration(y, s),
        "gradcam": {"energy_in_mask": 0.6234, "pointing_game": 0.8130, "n_images": 16, "n_with_mask": 16},
        "subgroups": by_subgroup,
        "limitations": ["Only 129 malignant test images."],
    }


def test_card_contains_counts_metrics_cis_and_disclaimer() -> None:
    info = full_info()
    card = render_model_card(info)
    assert card.startswith("# Model card: melanoma-resnet50 v7")
    assert "not a medical device" in card and "Research" in card
    for text in ("| train | 4321 | 567 | 4888 |", "| test | 905 | 129 | 1034 |", "3001", "lesion_id"):
        assert text in card
    assert "f" * 64 in card and "s3://bucket/isic2020/" in card
    assert "unreadable image: 3" in card and "smaller than 32 px: 11" in card
    assert "stage2_lr | 1e-05" in card
    m, ci = info["metrics"], info["ci"]
    assert f"| Sensitivity (recall, TPR) | {m['sensitivity']:.3f} | {ci['sensitivity'][0]:.3f} – " in card
    assert f"| ROC AUC | {m['auc_roc']:.3f} | {ci['auc_roc'][0]:.3f} – {ci['auc_roc'][1]:.3f} |" in card
    assert f"{m['pauc_80']:.4f}" in card
    assert f"{m['tp']} (TP)" in card and f"{m['fn']} (FN)" in card
    assert f"{info['operating_point']['threshold']:.4f}" in card
    assert "95% percentile bootstrap, 200 resamples, whole groups" in card
    assert f"{info['calibration']['ece']:.3f}" in card
    assert "0.623" in card and "0.813" in card
    assert "Only 129 malignant test images." in card
    assert "## Performance by subgroup" in card and "| sex = female | 134 |" in card
    assert NOT_MEASURED not in card
    assert "synthetic demo images" not in card


def test_missing_sections_say_not_measured() -> None:
    card = render_model_card({"model": {"name": "m"}, "data": {"synthetic": True}})
    assert "synthetic demo images" in card  # the warning banner
    for heading in ("## Calibration", "## Grad-CAM localisation", "## Performance on the test split"):
        section = card.split(heading, 1)[1].split("\n## ", 1)[0]
        assert NOT_MEASURED in section, heading
    assert "Counts: not measured" in card
    assert "not recorded" in card  # source, fingerprint, hyperparameters, threshold
    assert "## Known limitations" in card and "validation split" in card


def test_metrics_without_cis_and_gradcam_without_masks() -> None:
    info = full_info()
    del info["ci"]
    info["gradcam"] = {"n_images": 8, "n_with_mask": 0}
    card = render_model_card(info)
    assert "Confidence intervals: not measured" in card
    assert f"| ROC AUC | {info['metrics']['auc_roc']:.3f} | not measured |" in card
    assert "Localisation against lesion masks: not measured" in card


def test_table_cells_are_escaped_and_name_required() -> None:
    card = render_model_card({"model": {"name": "m"}, "protocol": {"hyperparameters": {"note": "a|b"}}})
    assert "| note | a\\|b |" in card
    with pytest.raises(ConfigError, match="name"):
        render_model_card({"model": {}})
    with pytest.raises(ConfigError, match="must be a dict"):
        render_model_card({"model": {"name": "m"}, "metrics": [1, 2]})


# ---------------------------------------------------------------------------------------------
# labels said exactly, from a real ISIC-style export (the demo generator's)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def isic_manifests(tmp_path_factory: pytest.TempPathFactory):
    from melanoma_mlops.data import demo
    from melanoma_mlops.data.sources.reader import load_source
    from melanoma_mlops.data.split import split_manifest

    root = tmp_path_factory.mktemp("isic")
    demo.generate(root, n=150, size=32, seed=3)
    df = load_source(str(root)).manifest.assign(sha256=lambda d: d["image_uri"])
    split = split_manifest(df, 0.15, 0.15, seed=0)
    return tuple(split[split["split"] == s].reset_index(drop=True) for s in ("train", "val", "test"))


def test_card_of_an_isic_export_names_class_1_composition_and_the_grouping_unit(isic_manifests) -> None:
    import pandas as pd

    from melanoma_mlops.data import describe, labels

    everything = pd.concat(isic_manifests)
    info = full_info()
    info["labels"] = describe.labels(everything, "malignant")
    info["data"]["group_key"] = describe.group_key(everything)
    card = render_model_card(info)

    composition = labels.class_composition(everything, 1)
    assert set(composition) <= {
        "Melanoma Invasive",
        "Melanoma in situ",
        "Basal cell carcinoma",
        "Squamous cell carcinoma, Invasive",
    }
    assert sum(composition.values()) == int(everything["label"].sum())
    for diagnosis, n in composition.items():
        assert f"| {diagnosis} | {n} |" in card
    assert "`Benign` → 0, `Malignant` → 1" in card
    assert "malignant vs benign: class 1 is every malignant diagnosis" in card
    assert "*malignant* versus *benign*" in card and "malignant (melanoma)" not in card
    grouping = labels.grouping(everything)
    assert f"patient ({grouping['patient']['groups']} groups, {grouping['patient']['images']} images)" in card
    assert f"lesion ({grouping['lesion']['groups']} groups" in card


def test_melanoma_task_is_named_melanoma_vs_rest() -> None:
    info = full_info()
    info["labels"] = {"task": "melanoma", "mapping": {"Benign > Nevus": 0}, "composition": {}}
    card = render_model_card(info)
    assert "*melanoma* versus *not melanoma*" in card
    assert "Not recorded: the metadata names no diagnosis finer than the label." in card


def test_group_counts_are_the_split_units_not_only_named_groups(isic_manifests) -> None:
    """The card once said '0 groups' where the split logged 420: images without a group are units."""
    import pandas as pd

    from melanoma_mlops.data import describe
    from melanoma_mlops.data.split import split_summary

    train, val, test = isic_manifests
    counts = describe.data_counts(train, val, test, {})
    summary = split_summary(pd.concat([train, val, test]))
    for name in ("train", "val", "test"):
        assert counts[name]["groups"] == summary[name]["groups"] > 0
    no_groups = test.assign(group_id="", group_kind="")
    assert describe.data_counts(train, val, no_groups, {})["test"]["groups"] == len(test)
    assert describe.group_key(no_groups).startswith("nothing shared")
