"""The ablation: comparison maths on hand-made numbers, the leaky control, the registration guard,
the compiled ParallelFor pipeline, and one tiny end-to-end run under kfp.local.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from datagen import grouped_manifest
from mlflow.tracking import MlflowClient

from melanoma_mlops import artifacts, config, tracking
from melanoma_mlops.config import DataConfig, SingleStageConfig, TrainingConfig
from melanoma_mlops.data import manifest
from melanoma_mlops.data.leakage import count_train_copies_in_test
from melanoma_mlops.data.oversample import oversample_train
from melanoma_mlops.data.split import split_manifest
from melanoma_mlops.errors import ConfigError, LeakageError
from melanoma_mlops.experiments.ablation import comparison_md, design, report, runs, stats
from melanoma_mlops.experiments.ablation.leaky import paper_leaky_split
from melanoma_mlops.registry import guard as leakage
from melanoma_mlops.steps import ablation as steps
from melanoma_pipelines.cli import ablation as ablation_cli
from melanoma_pipelines.cli.options import config_from_args

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _manifest(n_groups: int = 40) -> pd.DataFrame:
    """A validated-looking manifest (no files): one image per lesion, every 4th malignant."""
    df = grouped_manifest(n_groups=n_groups, per_group=1)
    return df.assign(width=64, height=64, split="")


def _summary(arm: str, seed: int, copies: int = 0, **metric_values: float | None) -> dict[str, Any]:
    """A trial summary as summarize_trial_step writes it, with only the fields the maths reads."""
    a = design.Arm.parse(arm)
    values = {m: 0.5 for m in stats.REPORT_METRICS} | metric_values
    return {
        "trial": f"{arm}:{seed}",
        "arm": arm,
        "label": a.label,
        "protocol": a.protocol,
        "variant": a.variant,
        "leaky": a.leaky,
        "seed": seed,
        "metrics": values,
        "n_test": 10,
        "test_copies_in_train": copies,
        "test_copies_share": copies / 10,
        "val_copies_in_train": copies,
        "train_seconds": 1.0,
    }


# --------------------------------------------------------------------------------------------
# comparison maths
# --------------------------------------------------------------------------------------------


def test_mean_sd_uses_the_sample_sd_and_drops_missing_values() -> None:
    stat = stats.mean_sd([1.0, 2.0, 3.0, 4.0, None, float("nan")])
    assert stat.n == 4
    assert stat.mean == pytest.approx(2.5)
    assert stat.sd == pytest.approx(1.2909944487)  # sqrt(5/3), ddof = 1
    one = stats.mean_sd([0.7])
    assert one.n == 1 and one.mean == pytest.approx(0.7) and math.isnan(one.sd)
    assert stats.mean_sd([]).n == 0


def test_paired_interval_is_the_student_t_interval() -> None:
    # diffs 0.1, 0.2, 0.3: mean 0.2, sd 0.1, t(0.975, 2) = 4.302653 -> half-width 0.248414
    stat = stats.paired_interval([0.1, 0.2, 0.3])
    assert stat.mean == pytest.approx(0.2)
    assert stat.sd == pytest.approx(0.1)
    assert stat.ci_low == pytest.approx(0.2 - 0.248414, abs=1e-6)
    assert stat.ci_high == pytest.approx(0.2 + 0.248414, abs=1e-6)
    same = stats.paired_interval([0.05, 0.05])
    assert same.ci_low == pytest.approx(0.05) and same.ci_high == pytest.approx(0.05)
    single = stats.paired_interval([0.3])
    assert single.n == 1 and math.isnan(single.ci_low) and math.isnan(single.ci_high)
    # two wildly different seeds: the raw interval (mean ± 12.7 sd/√2) leaves [-1, 1]; it is clipped
    wide = stats.paired_interval([-0.6, 0.4], bound=1.0)
    assert wide.mean == pytest.approx(-0.1) and (wide.ci_low, wide.ci_high) == (-1.0, 1.0)


def test_paired_differences_pair_by_seed() -> None:
    summaries = [
        _summary("honest:two_stage", 0, auc_roc=0.90, ece=0.10),
        _summary("honest:two_stage", 1, auc_roc=0.80, ece=0.20),
        _summary("honest:two_stage", 2, auc_roc=0.70, ece=0.05),
        _summary("honest:single_stage", 0, auc_roc=0.85, ece=0.15),
        _summary("honest:single_stage", 1, auc_roc=0.82, ece=0.10),
        # seed 2 missing for single_stage: it must not be paired with anything
    ]
    block = stats.paired_differences(summaries, "honest:two_stage", "honest:single_stage")
    assert block["seeds"] == [0, 1]
    auc = block["metrics"]["auc_roc"]
    assert auc["per_seed"] == {0: pytest.approx(0.05), 1: pytest.approx(-0.02)}
    assert auc["stat"].mean == pytest.approx(0.015)
    # two points: sd = |0.05 - (-0.02)| / sqrt(2); t(0.975, 1) = 12.7062
    half = 12.7062047 * (0.07 / math.sqrt(2)) / math.sqrt(2)
    assert auc["stat"].ci_low == pytest.approx(0.015 - half, abs=1e-5)
    assert auc["a_better"] == 1
    ece = block["metrics"]["ece"]  # lower is better: two_stage wins at seed 0 only
    assert ece["per_seed"] == {0: pytest.approx(-0.05), 1: pytest.approx(0.10)}
    assert ece["a_better"] == 1


def test_comparison_table_markdown_csv_and_json(tmp_path: Path) -> None:
    summaries = [
        _summary("honest:two_stage", 0, auc_roc=0.80),
        _summary("honest:two_stage", 1, auc_roc=0.84),
        _summary("honest:single_stage", 0, auc_roc=0.78),
        _summary("honest:single_stage", 1, auc_roc=0.79),
        _summary("leaky:two_stage", 0, copies=4, auc_roc=0.95),
        _summary("leaky:two_stage", 1, copies=6, auc_roc=0.97),
    ]
    comparison = stats.build_comparison(summaries, meta={"data": "hand-made"})
    arms = {a["arm"]: a for a in comparison["arms"]}
    assert list(arms) == ["honest:two_stage", "honest:single_stage", "leaky:two_stage"]
    assert arms["honest:two_stage"]["metrics"]["auc_roc"].mean == pytest.approx(0.82)
    assert arms["honest:two_stage"]["metrics"]["auc_roc"].sd == pytest.approx(0.0282842712)
    assert arms["leaky:two_stage"]["test_copies_in_train"].mean == pytest.approx(5.0)
    assert [(b["a"], b["b"]) for b in comparison["paired"]] == [("honest:two_stage", "honest:single_stage")]
    paired = comparison["paired"][0]["metrics"]["auc_roc"]["stat"]
    assert paired.mean == pytest.approx(0.035)  # (0.02 + 0.05) / 2
    inflation = comparison["leak_inflation"][0]
    assert (inflation["a"], inflation["b"]) == ("leaky:two_stage", "honest:two_stage")
    assert inflation["metrics"]["auc_roc"]["stat"].mean == pytest.approx(0.14)

    paths = report.write_reports(comparison, tmp_path)
    md = paths[report.REPORT_MD].read_text()
    assert "| two_stage | 0,1 | 0.8200 ± 0.0283 |" in md
    assert "**LEAKY (negative control) two_stage**" in md
    assert "## Paired differences two_stage − single_stage (honest protocol)" in md
    assert "+0.0350" in md
    csv_rows = pd.read_csv(paths[report.REPORT_CSV])
    row = csv_rows[(csv_rows["section"] == "paired") & (csv_rows["metric"] == "auc_roc")].iloc[0]
    assert row["name"] == "two_stage - single_stage" and row["n"] == 2
    assert row["mean"] == pytest.approx(0.035)
    assert row["per_seed"] == "0=0.02;1=0.05"
    leaky_rows = csv_rows[csv_rows["name"].str.startswith(artifacts.LEAKY_LABEL)]
    assert not leaky_rows.empty
    data = json.loads(paths[report.REPORT_JSON].read_text())  # strict JSON: NaN written as null
    assert data["arms"][0]["metrics"]["auc_roc"]["mean"] == pytest.approx(0.82)
    assert len(pd.read_csv(paths[report.TRIALS_CSV])) == 6
    flat = report.summary_metrics(comparison)
    assert flat["paired.honest.two_stage-minus-honest.single_stage/auc_roc_mean"] == pytest.approx(0.035)


def test_long_reports_are_cut_to_fit_the_run_description() -> None:
    text = "\n".join(f"| row {i} | {'x' * 50} |" for i in range(400))
    note = report.run_note(text)
    assert len(note) <= report.NOTE_LIMIT and note.endswith(f"ablation/{report.REPORT_MD})\n")
    assert note.split("\n")[-4].endswith("|")  # cut between lines, not inside one
    assert report.run_note("short") == "short"


def test_one_seed_gives_no_interval_but_still_renders() -> None:
    comparison = stats.build_comparison(
        [_summary("honest:two_stage", 0, auc_roc=0.8), _summary("honest:single_stage", 0, auc_roc=0.7)]
    )
    md = comparison_md.render_markdown(comparison)
    assert "n/a (n<2)" in md and "+0.1000" in md
    assert comparison_md._signed(0.2 - 0.2 - 1e-17) == "+0.0000"
    assert "LEAKY" not in md


def _three_seeds(leaky_aucs: tuple[float, ...], honest_aucs: tuple[float, ...]) -> dict[str, Any]:
    summaries = [_summary("honest:two_stage", s, auc_roc=a) for s, a in enumerate(honest_aucs)] + [
        _summary("leaky:two_stage", s, copies=3, auc_roc=a) | {"test_linked_share": 0.5}
        for s, a in enumerate(leaky_aucs)
    ]
    return stats.build_comparison(summaries)


def test_headline_states_the_inflation_its_interval_and_the_leak_share(tmp_path: Path) -> None:
    comparison = _three_seeds((0.95, 0.96, 0.97), (0.85, 0.87, 0.86))
    md = comparison_md.render_markdown(comparison)
    headline = md.split("## Headline", 1)[1].split("\n## ", 1)[0]
    assert "| two_stage | 0.8600 ± 0.0100 | 0.9600 ± 0.0100 | +0.1000 |" in headline
    assert "0.300" in headline and "0.500" in headline  # leaky test rows with a copy / same lesion
    assert "the interval excludes 0: the leak inflates the test AUC on this data." in headline
    undecided = comparison_md.render_markdown(_three_seeds((0.95, 0.80, 0.90), (0.85, 0.87, 0.86)))
    assert "the interval includes 0: this ablation cannot show an inflation" in undecided

    paths = report.write_reports(comparison, tmp_path)
    assert paths[report.PLOT_PNG].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_document_wraps_the_run_results_and_links_the_plot() -> None:
    from melanoma_mlops.experiments.ablation.document import render_document

    md = comparison_md.render_markdown(_three_seeds((0.95, 0.96, 0.97), (0.85, 0.87, 0.86)))
    doc = render_document(md, {"command": "`melanoma-mlops ablation --protocol both`", "machine": "2 cores"})
    assert doc.startswith("# The ablation: does the two-stage schedule matter")
    assert "- command: `melanoma-mlops ablation --protocol both`" in doc
    assert f"![Test AUC per arm and seed](ablation/{report.PLOT_PNG})" in doc
    assert "\n### Headline: the published protocol's inflation of test AUC" in doc  # demoted one level
    assert "\n## Ablation: two-stage vs single-stage fine-tuning" in doc  # the report's title, one level down


def test_same_lesion_images_count_as_linked_copies_do_not_cover_them() -> None:
    """Several images per lesion: a row split puts other views of a test lesion in train."""
    df = grouped_manifest(n_groups=40, per_group=3).assign(width=64, height=64, split="")
    train, _, test = paper_leaky_split(df, 0.15, 0.15, seed=0)
    copies = count_train_copies_in_test(train, test)
    linked = stats.count_test_rows_linked_to_train(train, test)
    assert linked > copies and linked == len(test)
    split = split_manifest(df, 0.15, 0.15, seed=0)
    honest_train = oversample_train(split[split["split"] == "train"].reset_index(drop=True), seed=0)
    assert stats.count_test_rows_linked_to_train(honest_train, split[split["split"] == "test"]) == 0


# --------------------------------------------------------------------------------------------
# trials and options
# --------------------------------------------------------------------------------------------


def test_trial_keys_cross_protocols_variants_and_seeds() -> None:
    keys = design.trial_keys(["single_stage", "two_stage"], design.protocols_for("both"), [0, 1])
    assert keys[:2] == ["honest:two_stage:0", "honest:two_stage:1"]
    assert len(keys) == 8 and "leaky:single_stage:1" in keys
    assert design.trial_keys(design.VARIANTS, design.protocols_for("honest"), [3]) == [
        "honest:two_stage:3",
        "honest:single_stage:3",
    ]
    assert design.parse_trial("leaky:two_stage:7") == (design.Arm("leaky", "two_stage"), 7)
    assert design.parse_seeds("2, 0,2") == [2, 0]
    for bad in ("honest:three_stage:0", "fair:two_stage:0", "honest:two_stage:x", "honest"):
        with pytest.raises(ConfigError):
            design.parse_trial(bad)
    with pytest.raises(ConfigError, match="twice"):
        design.check_trials(["honest:two_stage:0", "honest:two_stage:0"])
    with pytest.raises(ConfigError, match="unknown variant"):
        design.parse_list("two_stage,three_stage", design.VARIANTS, "variant")
    with pytest.raises(ConfigError, match="integers"):
        design.parse_seeds("0,one")


def test_cli_options() -> None:
    parser = argparse.ArgumentParser()
    ablation_cli.add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ablation", "--protocol", "both", "--seeds", "0,1", "--image-size", "32"])
    assert args.variants == "two_stage,single_stage" and args.protocol == "both"
    run = config_from_args(args)
    assert run.single_stage.single_stage_lr == 1e-4  # the default, as the help says
    assert run.training.image_size == 32


# --------------------------------------------------------------------------------------------
# the leaky control vs the honest split
# --------------------------------------------------------------------------------------------


def test_leaky_split_puts_copies_in_test_and_the_honest_split_does_not() -> None:
    df = _manifest()
    train, _, test = paper_leaky_split(df, 0.15, 0.15, seed=0)
    assert count_train_copies_in_test(train, test) > 0
    split = split_manifest(df, 0.15, 0.15, seed=0)
    honest_train = oversample_train(split[split["split"] == "train"].reset_index(drop=True), seed=0)
    honest_test = split[split["split"] == "test"]
    assert count_train_copies_in_test(honest_train, honest_test) == 0


def test_trial_summary_counts_the_leak_the_same_way_for_every_arm() -> None:
    df = _manifest()
    evaluation = {"test": {"auc_roc": 0.9}, "calibration": {"ece": 0.1}, "threshold": 0.5, "ci": {}}
    leaky = stats.trial_summary("leaky:two_stage:0", evaluation, *paper_leaky_split(df, 0.15, 0.15, seed=0))
    assert leaky["leaky"] and leaky["label"] == "LEAKY (negative control) two_stage"
    assert leaky["test_copies_in_train"] > 0 and leaky["leakage"]["leak_sha256"] > 0
    split = split_manifest(df, 0.15, 0.15, seed=0)
    parts = [split[split["split"] == s].reset_index(drop=True) for s in ("train", "val", "test")]
    honest = stats.trial_summary("honest:two_stage:0", evaluation, oversample_train(parts[0], 0), *parts[1:])
    assert honest["test_copies_in_train"] == 0 and set(honest["leakage"].values()) == {0}
    assert honest["metrics"]["auc_roc"] == 0.9 and honest["metrics"]["pr_auc"] is None


# --------------------------------------------------------------------------------------------
# MLflow structure and the registration guard (no training)
# --------------------------------------------------------------------------------------------


def _fake_evaluation(path: Path) -> str:
    path.mkdir(parents=True, exist_ok=True)
    (path / artifacts.EVALUATION_FILE).write_text(
        json.dumps({"test": {"auc_roc": 0.99}, "calibration": {"ece": 0.05}, "threshold": 0.5, "ci": {}})
    )
    return str(path)


def test_leaky_trial_is_tagged_and_never_registrable(mlflow_store: str, tmp_path: Path) -> None:
    client = MlflowClient()
    validation = tracking.start_pipeline_run("validation")  # main experiment: a new parent is made
    parent = steps.start_ablation_step(
        validation,
        run_name="abl",
        trials=["honest:two_stage:0", "leaky:two_stage:0"],
        settings=[TrainingConfig(image_size=32)],
    )
    assert parent != validation
    assert client.get_experiment(client.get_run(parent).info.experiment_id).name == design.ABLATION_EXPERIMENT
    assert client.get_run(parent).data.tags["ablation.includes_leaky_control"] == "true"
    assert client.get_run(validation).info.status == "FINISHED"

    src = tmp_path / "manifest.csv"
    manifest.write(_manifest(), src)
    arm, leaky_run, seed = steps.start_trial_step(parent, "leaky:two_stage:0")
    assert (arm, seed) == ("leaky:two_stage", 0)
    paths = [str(tmp_path / f"{s}.csv") for s in ("train", "val", "test")]
    counts = steps.leaky_split_step(str(src), *paths, parent_run_id=leaky_run, cfg=DataConfig(), seed=0)
    assert counts["test_copies_in_train"] > 0
    summary = json.loads(
        steps.summarize_trial_step(
            _fake_evaluation(tmp_path / "eval"),
            *paths,
            str(tmp_path / "summary"),
            trial_run_id=leaky_run,
            trial="leaky:two_stage:0",
        )
    )
    assert summary["test_copies_in_train"] == counts["test_copies_in_train"]
    steps.finish_trial_step(leaky_run, json.dumps(summary))

    trial = client.get_run(leaky_run)
    assert trial.info.run_name == "LEAKY (negative control) two_stage seed=0"
    assert trial.data.tags["leaky"] == "true" and trial.info.status == "FINISHED"
    assert trial.data.metrics["leak/test_copies_in_train"] > 0
    nested = tracking.descendants(client, leaky_run, runs.ablation_experiments(client))
    assert {r.info.run_name for r in nested} == {"leaky_split", "summarize"}
    assert all(r.data.tags.get("leaky") == "true" for r in nested)
    for run_id in (leaky_run, *(r.info.run_id for r in nested)):
        with pytest.raises(leakage.LeakyRunError, match=r"LEAKY \(negative control\)"):
            leakage.assert_registrable(run_id)
    assert issubclass(leakage.LeakyRunError, LeakageError)

    _, honest_run, _ = steps.start_trial_step(parent, "honest:two_stage:0")
    with tracking.step_run(honest_run, "stage1") as step:
        leakage.assert_registrable(step)  # a step of an honest trial: registrable
    leakage.assert_registrable(honest_run)
    leakage.assert_registrable(parent)
    leakage.assert_registrable(validation)


def test_validation_run_in_the_ablation_experiment_becomes_the_parent(mlflow_store: str) -> None:
    client = MlflowClient()
    exp_id = runs.ablation_experiment_id()
    validation = client.create_run(exp_id, run_name="abl", tags={"pipeline": "two-stage"}).info.run_id
    parent = steps.start_ablation_step(
        validation,
        run_name="abl",
        trials=["honest:single_stage:1"],
        settings=[SingleStageConfig(single_stage_lr=1e-4)],
    )
    assert parent == validation
    run = client.get_run(parent)
    assert run.data.tags["pipeline"] == "ablation"
    assert run.data.params["single_stage_lr"] == "0.0001"
    assert run.data.tags["ablation.includes_leaky_control"] == "false"


# --------------------------------------------------------------------------------------------
# the compiled pipeline
# --------------------------------------------------------------------------------------------


def test_compiled_pipeline_fans_out_with_parallel_for_and_registers_nothing(tmp_path: Path) -> None:
    import yaml
    from kfp import compiler

    from melanoma_pipelines.ablation_dag import build_ablation_pipeline

    seen: dict[str, Any] = {}
    out = tmp_path / "ablation.yaml"
    compiler.Compiler().compile(
        build_ablation_pipeline("registry.example/melanoma:1", parallelism=2, customize=seen.update), str(out)
    )
    text = out.read_text()
    spec = yaml.safe_load(text)
    root = spec["root"]["dag"]["tasks"]
    loops = [t for t in root.values() if "parameterIterator" in t]
    assert len(loops) == 1 and loops[0]["iteratorPolicy"]["parallelismLimit"] == 2
    assert {"validate", "start-ablation", "compare"} <= set(root)
    assert "register" not in text and "gradcam" not in text
    assert "dsl.Collected" not in text  # compiled away; the compare input is a list parameter
    assert "LEAKY (negative control) two_stage: leaky_split" in text
    assert spec["root"]["inputDefinitions"]["parameters"]["trials"]["defaultValue"] == [
        "honest:two_stage:0",
        "honest:two_stage:1",
        "honest:two_stage:2",
        "honest:single_stage:0",
        "honest:single_stage:1",
        "honest:single_stage:2",
    ]
    assert "registry.example/melanoma:1" in text
    executors = spec["deploymentSpec"]["executors"]
    assert all(
        {"name": artifacts.EXPERIMENT_ENV, "value": design.ABLATION_EXPERIMENT}
        in e["container"].get("env", [])
        for e in executors.values()
    )
    assert {
        "honest:two_stage/stage2",
        "honest:single_stage/single_stage",
        "leaky:two_stage/leaky_split",
    } <= set(seen)


def test_cluster_settings_follow_the_main_pipeline_roles(tmp_path: Path) -> None:
    import yaml

    from melanoma_pipelines.cluster import ClusterOptions
    from melanoma_pipelines.compile import compile_pipeline

    path = compile_pipeline(
        tmp_path / "a.yaml", cluster=ClusterOptions(gpus=1), pipeline="ablation", parallelism=3
    )
    spec = next(yaml.safe_load_all(path.read_text()))
    gpu = {
        re.sub(r"-\d+$", "", name.removeprefix("exec-"))
        for name, e in spec["deploymentSpec"]["executors"].items()
        if e["container"].get("resources", {}).get("accelerator")
    }
    assert gpu == {"stage1", "stage2", "single-stage", "evaluate"}
    caching = {}
    for dag in [spec["root"]["dag"], *(c["dag"] for c in spec["components"].values() if "dag" in c)]:
        for name, task in dag["tasks"].items():
            caching[name] = task.get("cachingOptions", {}).get("enableCache", False)
    # steps that open or close MLflow runs must run every time
    assert not any(
        caching[k] for k in ("start-ablation", "start-trial", "summarize", "finish-trial", "compare")
    )


def test_arguments_are_pipeline_inputs_and_the_single_stage_budget_is_resolved() -> None:
    """Every argument the CLI sends is an input (tests/unit/test_pipeline_params.py checks the wiring)."""
    from melanoma_pipelines.ablation_dag import ablation_arguments, build_ablation_pipeline

    inputs = set(build_ablation_pipeline().component_spec.inputs)
    run = config.RunConfig()
    arguments = ablation_arguments(run, "data", ["honest:two_stage:0"])
    assert set(arguments) <= inputs
    assert arguments["single_stage_epochs"] == run.training.stage1_epochs + run.training.stage2_epochs
