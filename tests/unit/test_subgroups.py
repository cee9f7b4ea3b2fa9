"""Performance by subgroup, on numbers: which rows fall into which slice, the figures and intervals of
each slice, the "insufficient" verdict, the MLflow names, the CSV, the forest plot and the card's
section. No TensorFlow, no MLflow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.utils.validation import _validate_metric_name

from melanoma_mlops.config import EvaluationConfig
from melanoma_mlops.data import subgroups
from melanoma_mlops.errors import ConfigError
from melanoma_mlops.evaluation import bootstrap, metrics
from melanoma_mlops.evaluation import subgroups as sliced
from melanoma_mlops.evaluation.forest import plot_forest
from melanoma_mlops.evaluation.modelcard_subgroups import subgroup_section


# ------------------------------------------------------------------------------- the columns
def test_age_bands_follow_the_edges_and_missing_ages_are_unknown() -> None:
    edges = EvaluationConfig().age_edges()
    assert edges == (30, 50, 70)
    assert subgroups.age_band_labels(edges) == ["<30", "30-49", "50-69", ">=70"]
    got = [
        subgroups.age_band(a, edges)
        for a in (0, 29, 29.9, 30, 49, 50, 69, 70, 95, None, "", "x", float("nan"))
    ]
    assert got == ["<30", "<30", "<30", "30-49", "30-49", "50-69", "50-69", ">=70", ">=70", *["unknown"] * 4]


@pytest.mark.parametrize("bands", ["", "30;50", "50,30", "30,30", "0,40", "30,150", "thirty"])
def test_age_bands_that_cannot_be_read_name_the_option(bands: str) -> None:
    with pytest.raises(ConfigError, match="--age-bands"):
        EvaluationConfig(age_bands=bands)


def test_values_are_normalised_and_missing_ones_are_an_explicit_unknown_slice() -> None:
    df = pd.DataFrame(
        {
            "sex": ["male", "F", "Female", "", "unknown", None],
            "age": [25, 55, np.nan, 71, 40, 33],
            "anatom_site": ["Head/Neck", "posterior torso", "", "palms/soles", "head/neck", "nan"],
            "skin_tone": ["3.0", "ii", "", "6", "III", "7"],
        }
    )
    frame = subgroups.slice_frame(df, (30, 50, 70))
    assert list(frame.columns) == ["sex", "age_band", "anatom_site", "skin_tone"]
    assert frame["sex"].tolist() == ["male", "female", "female", "unknown", "unknown", "unknown"]
    assert frame["age_band"].tolist() == ["<30", "50-69", "unknown", ">=70", "30-49", "30-49"]
    assert frame["anatom_site"].tolist() == [
        "head/neck",
        "posterior torso",
        "unknown",
        "palms/soles",
        "head/neck",
        "unknown",
    ]
    # Fitzpatrick types as the layouts write them (metadata.fitzpatrick); another scale's value kept
    assert frame["skin_tone"].tolist() == ["III", "II", "unknown", "VI", "III", "7"]
    assert len(frame) == len(df)  # never a row dropped


def test_lacking_names_the_columns_a_data_set_does_not_have_or_never_fills() -> None:
    df = pd.DataFrame({"sex": ["male", "female"], "skin_tone": ["", ""], "image_uri": ["a", "b"]})
    assert [s.name for s in subgroups.present(df)] == ["sex"]
    lacking = {s.name: s.lacking for s in subgroups.lacking(df)}
    assert set(lacking) == {"age_band", "anatom_site", "skin_tone", "clinic", "device"}
    assert lacking["skin_tone"] == "no skin-tone information: performance across skin tones unknown"


def test_the_loaders_map_their_metadata_onto_the_declared_columns() -> None:
    from melanoma_mlops.data.sources.common import CARRY

    assert set(CARRY.values()) <= set(subgroups.SUBGROUP_COLUMNS)


# ------------------------------------------------------------------------- the sliced figures
def _cohort(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Two images per lesion; the model is good everywhere except on head/neck, where it guesses."""
    rng = np.random.default_rng(seed)
    lesions = n // 2
    site = rng.choice(["posterior torso", "head/neck", "lower extremity"], lesions, p=[0.5, 0.28, 0.22])
    y_lesion = (rng.random(lesions) < 0.3).astype(int)
    site[:3], y_lesion[:3] = "", 1  # three malignant lesions without a site: too few to judge
    df = pd.DataFrame(
        {
            "image_uri": [f"img{i}.jpg" for i in range(n)],
            "group_id": [f"lesion:{i // 2}" for i in range(n)],
            "label": np.repeat(y_lesion, 2),
            "anatom_site": np.repeat(site, 2),
            "sex": np.repeat(rng.choice(["male", "female"], lesions), 2),
        }
    )
    y = df["label"].to_numpy()
    signal = np.where(df["anatom_site"] == "head/neck", 0.0, 2.5)
    scores = 1 / (1 + np.exp(-(rng.normal(size=n) + signal * (y - 0.5))))
    return df, y, scores


def test_each_slice_has_its_counts_figures_and_group_bootstrap_interval() -> None:
    df, y, s = _cohort()
    spec = sliced.SliceSpec((30, 50, 70), 5, 5)
    record = sliced.evaluate_slices(df, y, s, 0.5, spec, n_boot=300, seed=3)
    rows = {r["key"]: r for r in record["slices"]}
    assert list(rows) == [
        "sex=female",
        "sex=male",
        "anatom_site=head/neck",
        "anatom_site=lower extremity",
        "anatom_site=posterior torso",
        "anatom_site=unknown",
    ]
    assert record["unit"] == "group" and record["columns"] == ["sex", "anatom_site"]
    for key, r in rows.items():
        family, value = key.split("=")
        mask = (subgroups.slice_frame(df, spec.age_edges)[family] == value).to_numpy()
        assert r["n"] == int(mask.sum()) and r["positives"] == int(y[mask].sum())
        if r["status"] != sliced.MEASURED:
            continue
        m = metrics.binary_metrics(y[mask], s[mask], 0.5)
        for name in ("auc_roc", "sensitivity", "specificity"):
            assert r[name] == pytest.approx(m[name])
        # The interval is exactly our group bootstrap restricted to the slice (same units, same seed).
        units = bootstrap.resampling_units(df)[mask]
        boot = bootstrap.bootstrap(y[mask], s[mask], 0.5, units, n_boot=300, seed=3)
        assert r["auc_roc_ci"] == pytest.approx(list(boot.ci["auc_roc"]))
        assert r["auc_roc_ci"][0] <= r["auc_roc"] <= r["auc_roc_ci"][1]
    # The planted weakness shows, with an interval that excludes the others' figures.
    assert (
        rows["anatom_site=head/neck"]["auc_roc_ci"][1] < rows["anatom_site=posterior torso"]["auc_roc_ci"][0]
    )


def test_a_slice_below_the_minimum_is_insufficient_with_counts_and_no_figures() -> None:
    df, y, s = _cohort()
    record = sliced.evaluate_slices(df, y, s, 0.5, sliced.SliceSpec((30, 50, 70), 5, 5), n_boot=100)
    unknown = next(r for r in record["slices"] if r["key"] == "anatom_site=unknown")
    assert unknown["positives"] < 5 or unknown["negatives"] < 5
    assert unknown["status"] == sliced.INSUFFICIENT
    assert not {"auc_roc", "sensitivity", "specificity", "pauc_80"} & set(unknown)
    assert "at least 5 and 5 are needed" in unknown["note"]
    stricter = sliced.evaluate_slices(df, y, s, 0.5, sliced.SliceSpec((30, 50, 70), 1000, 5), n_boot=100)
    assert {r["status"] for r in stricter["slices"]} == {sliced.INSUFFICIENT}


def test_pauc_is_reported_only_where_the_slice_has_enough_positives() -> None:
    df, y, s = _cohort()
    record = sliced.evaluate_slices(df, y, s, 0.5, sliced.SliceSpec((30, 50, 70), 2, 2), n_boot=100)
    for r in record["slices"]:
        if r["status"] == sliced.MEASURED:
            assert ("pauc_80" in r) == (r["positives"] >= sliced.PAUC_MIN_POSITIVES)


def test_a_subgroup_with_one_value_is_not_sliced_but_named() -> None:
    df, y, s = _cohort()
    df["clinic"] = "clinic 1"
    record = sliced.evaluate_slices(df, y, s, 0.5, sliced.SliceSpec(), n_boot=50)
    assert record["uniform"] == {"clinic": "clinic 1"}
    assert not [r for r in record["slices"] if r["family"] == "clinic"]


def test_rows_without_groups_are_resampled_as_rows() -> None:
    df, y, s = _cohort()
    df["group_id"] = ""
    record = sliced.evaluate_slices(df, y, s, 0.5, sliced.SliceSpec(), n_boot=50)
    assert record["unit"] == "row"


def test_mismatched_lengths_are_refused() -> None:
    df, y, s = _cohort()
    with pytest.raises(Exception, match="must pair"):
        sliced.evaluate_slices(df, y[:-1], s, 0.5, sliced.SliceSpec())


# ----------------------------------------------------------------------------- the records
def test_metric_names_are_valid_mlflow_names_and_unique() -> None:
    values = ["<30", ">=70", "head/neck", "palms/soles", "oral/genital", "a=b", "..", "", "torso: back"]
    slugs = [sliced.metric_slug("x", v) for v in values]
    for slug in slugs:
        _validate_metric_name(f"slice/{slug}/auc_roc_ci_low")
    assert sliced.metric_slug("age_band", "<30") == "age_band.lt30"
    assert sliced.metric_slug("age_band", ">=70") == "age_band.ge70"
    assert sliced.metric_slug("anatom_site", "head/neck") == "anatom_site.head-neck"


def test_flat_metrics_and_csv_carry_every_measured_figure_with_its_bounds() -> None:
    df, y, s = _cohort()
    overall = {
        "n": len(y),
        "positives": int(y.sum()),
        "negatives": int((1 - y).sum()),
        "auc_roc": 0.9,
        "auc_roc_ci": [0.85, 0.95],
    }
    record = sliced.evaluate_slices(df, y, s, 0.5, sliced.SliceSpec(), overall=overall, n_boot=100)
    flat = sliced.flat_metrics(record)
    assert flat["slice/anatom_site.head-neck/auc_roc"] == pytest.approx(
        next(r["auc_roc"] for r in record["slices"] if r["key"] == "anatom_site=head/neck")
    )
    for key in ("auc_roc", "sensitivity", "specificity"):
        assert f"slice/sex.female/{key}_ci_low" in flat and f"slice/sex.female/{key}_ci_high" in flat
    assert "slice/anatom_site.unknown/n" in flat and "slice/anatom_site.unknown/auc_roc" not in flat
    table = sliced.table(record)
    assert list(table.columns) == list(sliced.CSV_COLUMNS)
    assert table.iloc[0][["subgroup", "value", "auc_roc", "auc_roc_ci_low"]].tolist() == [
        "all",
        "all",
        0.9,
        0.85,
    ]
    assert len(table) == 1 + len(record["slices"])
    assert set(table["status"]) == {"measured", "insufficient"}


def test_the_forest_plot_has_a_row_per_slice(tmp_path) -> None:
    from PIL import Image

    df, y, s = _cohort()
    record = sliced.evaluate_slices(
        df, y, s, 0.5, sliced.SliceSpec(), overall={"auc_roc": 0.9, "auc_roc_ci": [0.85, 0.95]}, n_boot=50
    )
    path = plot_forest(record, tmp_path / "forest.png", positive_name="melanoma")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.height > 200
    assert plot_forest({"slices": []}, tmp_path / "none.png") is None


def test_the_card_section_shows_slices_insufficient_ones_and_what_is_lacking() -> None:
    df, y, s = _cohort()
    df["clinic"] = "clinic 1"
    overall = {"n": len(y), "positives": int(y.sum()), "auc_roc": 0.9, "auc_roc_ci": [0.85, 0.95]}
    record = sliced.evaluate_slices(df, y, s, 0.5, sliced.SliceSpec(), overall=overall, n_boot=50)
    text = "\n".join(subgroup_section(record, ("not melanoma", "melanoma")))
    assert text.startswith("## Performance by subgroup")
    assert "| Subgroup | Images | Melanoma | ROC AUC (95% CI) |" in text
    assert "| **all test images** | 600 |" in text and "0.900 (0.850–0.950)" in text
    head = next(r for r in record["slices"] if r["key"] == "anatom_site=head/neck")
    assert f"| anatom_site = head/neck | {head['n']} | {head['positives']} | {head['auc_roc']:.3f} (" in text
    assert "| anatom_site = unknown |" in text and "insufficient | – |" in text
    assert "fewer than 5 melanoma or 5 not melanoma" in text
    assert "no skin-tone information: performance across skin tones unknown" in text
    assert "clinic: every test image is *clinic 1*" in text
    assert "not measured" in "\n".join(subgroup_section(None, ("benign", "malignant")))


def test_the_console_shows_each_slice_with_its_intervals_or_why_it_has_none(mlflow_store, tmp_path) -> None:
    import mlflow

    from melanoma_pipelines.results import subgroup_lines

    df, y, s = _cohort()
    overall = {"n": len(y), "positives": int(y.sum()), "auc_roc": 0.9, "auc_roc_ci": [0.85, 0.95]}
    record = sliced.evaluate_slices(df, y, s, 0.5, sliced.SliceSpec(), overall=overall, n_boot=50)
    sliced.table(record).to_csv(tmp_path / "subgroups.csv", index=False)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "subgroups.csv"), "evaluation")
    lines = subgroup_lines(run.info.run_id, "melanoma")
    assert lines[0].startswith("by subgroup (AUC and sensitivity, 95% CI")
    head = next(r for r in record["slices"] if r["key"] == "anatom_site=head/neck")
    row = next(line for line in lines if "anatom_site=head/neck" in line)
    assert f"{head['positives']} melanoma" in row
    assert f"AUC {head['auc_roc']:.3f} [{head['auc_roc_ci'][0]:.3f}, {head['auc_roc_ci'][1]:.3f}]" in row
    assert "insufficient" in next(line for line in lines if "anatom_site=unknown" in line)
    with mlflow.start_run() as empty:
        pass
    assert subgroup_lines(empty.info.run_id) == []  # a run recorded before subgroups: nothing to show
