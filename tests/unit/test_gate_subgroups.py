"""The gate's per-subgroup comparison on numbers: paired differences per slice, the decision they lead
to, and how the record, its tags, metrics and the Markdown report say it. No TensorFlow, no MLflow
server: the scores are made up, everything after them is the production code."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from melanoma_mlops.config import GateConfig
from melanoma_mlops.evaluation.subgroups import SliceSpec
from melanoma_mlops.registry import decision, subgroups
from melanoma_mlops.registry.gate import decide
from melanoma_mlops.registry.report import gate_markdown


def _test_set(n_lesions: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    site = rng.choice(["posterior torso", "head/neck", "lower extremity"], n_lesions, p=[0.6, 0.12, 0.28])
    site[:3] = "palms/soles"  # three lesions: too few to judge
    y = (rng.random(n_lesions) < 0.3).astype(int)
    return pd.DataFrame(
        {
            "image_uri": [f"/t/{i}.png" for i in range(2 * n_lesions)],
            "label": np.repeat(y, 2),
            "group_id": [f"lesion:{i // 2}" for i in range(2 * n_lesions)],
            "sha256": [f"{i:064x}" for i in range(2 * n_lesions)],
            "anatom_site": np.repeat(site, 2),
            "sex": np.repeat(rng.choice(["female", "male"], n_lesions), 2),
        }
    )


def _scores(test: pd.DataFrame, seed: int, weak_site: str | None = None) -> np.ndarray:
    """A good model: what every version sees in an image (shared) plus its own noise; with
    ``weak_site``, one that guesses on that site's images. Two versions of one model on one task are
    correlated like this; independent ones would need far more cases per subgroup (docs/evaluation.md)."""
    shared = np.random.default_rng(0).normal(size=len(test))
    own = np.random.default_rng(seed).normal(size=len(test))
    y = test["label"].to_numpy()
    signal = np.full(len(y), 3.0)
    if weak_site is not None:
        signal[(test["anatom_site"] == weak_site).to_numpy()] = 1.0
    return 1 / (1 + np.exp(-(shared + 0.3 * own + signal * (y - 0.5))))


def test_paired_differences_are_zero_with_a_zero_interval_for_the_same_scores() -> None:
    test = _test_set()
    y, s = test["label"].to_numpy(), _scores(test, 1)
    out = subgroups.paired_differences(y, s, 0.4, s, 0.4, None, n_boot=200)
    for key in ("auc_roc", "sensitivity"):
        assert out[key] == (0.0, (0.0, 0.0))


def test_compare_slices_finds_the_subgroup_the_candidate_is_worse_on() -> None:
    test = _test_set()
    champion = (_scores(test, 1), 0.5)
    candidate = (_scores(test, 2, weak_site="head/neck"), 0.5)
    rows = {
        r["name"]: r for r in subgroups.compare_slices(test, candidate, champion, SliceSpec(), n_boot=300)
    }
    assert set(rows) == {
        "sex=female",
        "sex=male",
        "anatom_site=head/neck",
        "anatom_site=lower extremity",
        "anatom_site=palms/soles",
        "anatom_site=posterior torso",
    }
    head = rows["anatom_site=head/neck"]
    assert head["auc_delta"] < -0.1 and head["auc_delta_ci"][1] < 0
    torso = rows["anatom_site=posterior torso"]
    assert torso["auc_delta_ci"][0] < 0 < torso["auc_delta_ci"][1] or abs(torso["auc_delta"]) < 0.03
    small = rows["anatom_site=palms/soles"]
    assert small["n_positive"] + small["n_negative"] == 6 and "auc_delta" not in small


def _gate(test: pd.DataFrame, candidate: tuple, champion: tuple) -> dict:
    """The promote step's pure part: decide, then the record (as gate_step composes it)."""
    spec = SliceSpec()
    rows = subgroups.compare_slices(test, candidate, champion, spec, n_boot=300)
    y = test["label"].to_numpy()
    cand = {
        "auc_roc": 0.95, "sensitivity": 0.92, "specificity": 0.85, "auc_roc_ci": (0.93, 0.97),
        "sensitivity_ci": (0.88, 0.95), "specificity_ci": (0.8, 0.88),
        "tp": int(y.sum()) - 10, "fn": 10, "tn": int((1 - y).sum()) - 100, "fp": 100,
        "bootstrap": {"n_boot": 300, "unit": "group", "n_units": 600},
    }  # fmt: skip
    champ = {
        "version": "1", "threshold": 0.5, "metrics": {**cand}, "train_overlap": 0,
        "compare_note": "all images", "compare_auc": 0.95, "candidate_compare_auc": 0.951,
        "auc_delta": 0.001, "auc_delta_ci": (-0.01, 0.012), "slices": rows,
    }  # fmt: skip
    evaluation = {"threshold": 0.5, "test": {"auc_roc": 0.95}, "ci": {}, "subgroups": {**spec.as_record()}}
    gate = GateConfig(model_name="m")
    verdict = decide(
        decision.candidate_of("2", cand, evaluation),
        decision.comparison_of(champ),
        decision.limits_of(gate, decision.slice_spec_of(evaluation)),
        auto_promote=True,
    )
    mv = SimpleNamespace(version="2", tags={})
    record = decision.decision_record(
        verdict, gate, mv, SimpleNamespace(tags={}), champ, cand, evaluation, test
    )
    return record | {"run_id": "r", "pipeline_run_id": "p"}


def test_a_candidate_worse_on_one_site_is_held_and_every_record_names_it() -> None:
    test = _test_set()
    record = _gate(test, (_scores(test, 2, weak_site="head/neck"), 0.5), (_scores(test, 1), 0.5))
    assert record["action"] == "held" and not record["passed"]
    assert record["reason"].startswith("held: worse than champion v1 on a subgroup")
    assert "anatom_site=head/neck" in record["reason"]
    tags = decision.decision_tags(record, "p")
    worse = tags["gate.subgroups_worse"].split(", ")
    assert tags["gate.subgroups"] == "failed" and "anatom_site=head/neck" in worse
    # The other sites are as good as the champion's; a subgroup that holds head/neck images (one
    # sex) may be named too: its sensitivity drops with them.
    assert not {"anatom_site=posterior torso", "anatom_site=lower extremity"} & set(worse)
    assert "posterior torso (" not in record["reason"] and "lower extremity (" not in record["reason"]
    assert tags["gate.max_slice_drop"] == "0.05"
    metrics = decision.decision_metrics(record)
    assert metrics["gate/subgroups_passed"] == 0.0 and metrics["gate/subgroup_delta_ci_low_min"] < -0.05
    report = gate_markdown(record)
    assert "**HELD - not promoted automatically" in report
    assert "## By subgroup (candidate − champion, paired on the same images)" in report
    assert "| anatom_site=palms/soles |" in report and "| – | – |" in report


def test_a_candidate_as_good_on_every_subgroup_passes_the_subgroup_check() -> None:
    test = _test_set()
    record = _gate(test, (_scores(test, 2), 0.5), (_scores(test, 1), 0.5))
    check = next(c for c in record["checks"] if c["name"] == "subgroups")
    assert check["passed"], check["detail"]
    assert decision.decision_tags(record, "p")["gate.subgroups_worse"] == "none"
    assert record["action"] == "promoted"


@pytest.mark.parametrize("missing", [None, {}])
def test_an_evaluation_recorded_before_subgroups_uses_the_default_slices(missing) -> None:
    evaluation = {"threshold": 0.5} if missing is None else {"threshold": 0.5, "subgroups": missing}
    assert decision.slice_spec_of(evaluation) == SliceSpec()
