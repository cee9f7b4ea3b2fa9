"""``compare``'s logic on numbers (issue 22): the paired bootstrap of two models on the same images, the
comparison of run records (what differs, the estimates, the pairing, the verdict) and its renderings.
No MLflow, no files: records are built by hand."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from melanoma_mlops.errors import ConfigError
from melanoma_mlops.evaluation import bootstrap
from melanoma_mlops.evaluation.metrics import HEADLINE_KEYS, binary_metrics
from melanoma_mlops.experiments.compare import comparison, render
from melanoma_mlops.experiments.compare.comparison import RunRecord

N_POS, N_NEG = 40, 120


def _labels() -> np.ndarray:
    return np.r_[np.ones(N_POS), np.zeros(N_NEG)].astype(int)


def _predictions(scores: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """A predictions.csv as the evaluate step writes it: 2 images per lesion (group)."""
    y = _labels()
    n = len(y)
    rows = pd.DataFrame(
        {
            "image_uri": [f"/data/img_{i:03d}.jpg" for i in range(n)],
            "label": y,
            "sha256": [f"{i:064x}" for i in range(n)],
            "width": 64,
            "height": 64,
            "group_id": [f"lesion_{i // 2}" for i in range(n)],
            "split": "test",
            "score": scores,
        }
    )
    return rows.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # any row order


def _record(run_id: str, scores: np.ndarray, threshold: float, params: dict, start: int, **kw) -> RunRecord:
    """A run record whose logged test metrics are those of ``scores`` (with made-up intervals)."""
    y = _labels()
    point = binary_metrics(y, scores, threshold)
    metrics = {"threshold": threshold}
    for k in HEADLINE_KEYS:
        metrics |= {
            f"test/{k}": point[k],
            f"test/{k}_ci_low": point[k] - 0.05,
            f"test/{k}_ci_high": point[k] + 0.05,
        }
    return RunRecord(run_id, f"two-stage {run_id}", start, params, metrics, _predictions(scores), **kw)


@pytest.fixture(scope="module")
def scores() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    y = _labels()
    noise = rng.random(len(y))
    return {"weak": noise + 0.3 * y, "strong": noise + 1.2 * y, "same_ranking": (noise + 0.3 * y) ** 3}


# ------------------------------------------------------------------ the paired bootstrap itself


def test_the_paired_interval_is_zero_for_models_that_rank_every_image_alike(scores) -> None:
    """Identical rankings differ by exactly 0 on every resample only when both models are recomputed on
    the same resampled groups: the pairing the gate relies on."""
    y, groups = _labels(), np.repeat(np.arange(80), 2).astype(str)
    d = bootstrap.paired_differences(y, scores["same_ranking"], 0.1, scores["weak"], 0.1, groups)
    assert d["auc_roc"].delta == pytest.approx(0.0)
    assert d["auc_roc"].ci == (pytest.approx(0.0), pytest.approx(0.0))
    assert not d["auc_roc"].differs


def test_the_paired_interval_is_narrower_than_either_models_own(scores) -> None:
    y, groups = _labels(), np.repeat(np.arange(80), 2).astype(str)
    nudged = scores["weak"] + 0.02 * np.random.default_rng(2).standard_normal(len(y))
    d = bootstrap.paired_differences(y, nudged, 0.5, scores["weak"], 0.5, groups)["auc_roc"]
    own = bootstrap.bootstrap(y, scores["weak"], 0.5, groups).ci["auc_roc"]
    assert (d.ci[1] - d.ci[0]) < 0.25 * (own[1] - own[0])


def test_a_clearly_stronger_model_differs_with_an_interval_above_zero(scores) -> None:
    y, groups = _labels(), np.repeat(np.arange(80), 2).astype(str)
    d = bootstrap.paired_differences(y, scores["strong"], 0.9, scores["weak"], 0.9, groups)["auc_roc"]
    assert 0 < d.ci[0] < d.delta < d.ci[1] and d.differs
    assert d.a == pytest.approx(binary_metrics(y, scores["strong"], 0.9)["auc_roc"])


def test_resampling_units_fall_back_to_the_image_and_to_rows() -> None:
    rows = pd.DataFrame({"group_id": ["g1", "", "g1"], "image_uri": ["a.jpg", "b.jpg", "c.jpg"]})
    assert bootstrap.resampling_units(rows).tolist() == ["g1", "image:b.jpg", "g1"]
    assert bootstrap.resampling_units(rows.assign(group_id="")) is None
    assert bootstrap.resampling_units(rows.drop(columns="group_id")) is None


# ------------------------------------------------------------------ comparing run records


def test_two_runs_differing_in_one_setting_are_paired_and_judged(scores) -> None:
    a = _record("a" * 32, scores["weak"], 0.9, {"stage2_lr": "1e-05", "seed": "42"}, start=1)
    b = _record("b" * 32, scores["strong"], 1.2, {"stage2_lr": "3e-05", "seed": "42"}, start=2)
    c = comparison.compare([a, b])

    assert c.labels == ("A", "B")
    assert c.params == {"stage2_lr": ("1e-05", "3e-05")}  # seed is the same: not listed
    auc_a = c.metrics["auc_roc"][0]
    assert auc_a.value == pytest.approx(a.metrics["test/auc_roc"]) and auc_a.low == pytest.approx(
        auc_a.value - 0.05
    )
    (p,) = c.pairings
    assert not p.unpaired_reason and p.unit == "group" and (p.n_images, p.n_malignant) == (160, 40)
    assert set(p.differences) == set(HEADLINE_KEYS)
    assert p.differences["auc_roc"].differs and p.differences["auc_roc"].delta > 0
    assert p.verdict.startswith("B is better than A on AUC +")
    assert "cannot be told apart" not in p.verdict.split(";")[0]
    assert p.caution == ""  # 40 malignant and 120 benign: at the gate's minimum


def test_the_same_scores_cannot_be_told_apart_and_a_small_set_is_flagged(scores) -> None:
    a = _record("a" * 32, scores["weak"], 0.9, {"seed": "1"}, start=1)
    b = _record("b" * 32, scores["weak"], 0.9, {"seed": "1"}, start=2)
    (p,) = comparison.compare([a, b]).pairings
    assert p.verdict == "B and A cannot be told apart on any headline metric (AUC +0.000 [0.000, 0.000])"
    few = a.predictions.head(20)
    small = comparison.pair(
        RunRecord("x" * 32, "x", 1, {}, a.metrics, few),
        RunRecord("y" * 32, "y", 2, {}, b.metrics, few),
        "B",
        "A",
    )
    assert "below the promotion gate's minimum of 30/30" in small.caution


def test_row_order_does_not_matter(scores) -> None:
    a = _record("a" * 32, scores["weak"], 0.9, {}, start=1)
    b = _record("b" * 32, scores["strong"], 1.2, {}, start=2)
    shuffled = RunRecord(b.run_id, b.name, 2, {}, b.metrics, b.predictions.sample(frac=1.0, random_state=7))
    first, second = (comparison.compare([a, r]).pairings[0] for r in (b, shuffled))
    assert first.differences == second.differences


def test_runs_on_different_test_sets_or_without_predictions_are_not_paired(scores) -> None:
    a = _record("a" * 32, scores["weak"], 0.9, {}, start=1)
    other_set = a.predictions.assign(sha256=lambda d: d["sha256"].str.replace("0", "f", n=1))
    b = RunRecord("b" * 32, "b", 2, {}, a.metrics, other_set)
    c = RunRecord("c" * 32, "c", 3, {}, a.metrics, None)
    pairings = comparison.compare([a, b, c]).pairings
    assert pairings[0].unpaired_reason.startswith("different test sets") and not pairings[0].differences
    assert "run C has no predictions.csv" in pairings[1].unpaired_reason
    assert [p.verdict for p in pairings] == ["", ""]


@pytest.mark.parametrize("n", [0, 1])
def test_fewer_than_two_runs_are_refused(scores, n) -> None:
    runs = [_record("a" * 32, scores["weak"], 0.9, {}, start=1)][:n]
    with pytest.raises(ConfigError, match="two or more runs"):
        comparison.compare(runs)


def test_a_run_given_twice_is_refused(scores) -> None:
    a = _record("a" * 32, scores["weak"], 0.9, {}, start=1)
    with pytest.raises(ConfigError, match="given twice"):
        comparison.compare([a, a])


def test_the_verdict_names_worse_metrics_and_an_undecided_auc() -> None:
    pd_ = bootstrap.PairedDifference
    diffs = {
        "auc_roc": pd_(0.90, 0.89, 0.012, (-0.014, 0.038)),
        "sensitivity": pd_(0.9, 0.85, 0.05, (0.02, 0.09)),
        "specificity": pd_(0.5, 0.6, -0.1, (-0.2, -0.01)),
        "f1": pd_(0.5, 0.5, 0.0, (-0.1, 0.1)),
    }
    assert comparison.verdict("B", "A", diffs) == (
        "B is better than A on sensitivity +0.050 [0.020, 0.090]; "
        "B is worse than A on specificity -0.100 [-0.200, -0.010]; "
        "AUC cannot be told apart (+0.012 [-0.014, 0.038])"
    )


# ------------------------------------------------------------------ renderings


def test_the_text_table_holds_the_intervals_side_by_side_and_the_verdict(scores) -> None:
    a = _record("a" * 32, scores["weak"], 0.9, {"stage2_lr": "1e-05"}, start=1)
    b = _record("b" * 32, scores["strong"], 1.2, {"stage2_lr": "3e-05"}, start=2)
    c = comparison.compare([a, b])
    text = "\n".join(render.text_lines(c))
    m = a.metrics
    assert (
        f"{m['test/auc_roc']:.3f} [{m['test/auc_roc_ci_low']:.3f}, {m['test/auc_roc_ci_high']:.3f}]" in text
    )
    assert "B - A (paired 95% CI)" in text and "stage2_lr" in text and "1e-05" in text
    assert f"verdict: {c.pairings[0].verdict}" in text


def test_the_html_page_is_self_contained_and_escapes_names(scores) -> None:
    a = _record("a" * 32, scores["weak"], 0.9, {"note": "<b>x</b>"}, start=1)
    b = _record("b" * 32, scores["strong"], 1.2, {"note": "y"}, start=2)
    b = RunRecord(b.run_id, "<script>alert(1)</script>", 2, b.params, b.metrics, b.predictions)
    page = render.html_page(comparison.compare([a, b]))
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "http" not in page  # nothing fetched: MLflow's artifact viewer shows it as it is
    assert 'class="better"' in page


def test_the_json_is_strict_json_with_every_figure(scores) -> None:
    a = _record("a" * 32, scores["weak"], 0.9, {}, start=1)
    b = RunRecord("b" * 32, "b", 2, {}, {"test/auc_roc": 0.7, "threshold": float("nan")}, None)
    data = json.loads(json.dumps(render.as_dict(comparison.compare([a, b])), allow_nan=False))
    assert data["runs"][1]["threshold"] is None and data["metrics"]["auc_roc"]["B"]["ci_low"] is None
    assert data["metrics"]["f1"]["B"] is None
    assert data["pairings"][0]["paired"] is False and data["pairings"][0]["verdict"] is None


def test_the_comparison_goes_on_the_newest_run(scores) -> None:
    runs = [_record(c * 32, scores["weak"], 0.9, {}, start=s) for c, s in (("a", 5), ("b", 9), ("c", 7))]
    assert comparison.newest(runs).run_id == "b" * 32
