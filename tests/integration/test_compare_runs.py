"""``melanoma-mlops compare`` on the two real tiny pipeline runs that differ in ``--stage2-lr``
(conftest ``two_pipeline_runs``, shared with the MLflow UI browser tests; issue 22): it prints the
settings that differ, the test metrics with their intervals side by side, the paired differences and
a verdict, and logs the same as an HTML page on the newest run; ``--json`` for scripts. Bad input is
tests/unit/test_compare_bad_input.py."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from readme_blocks import README, ROOT, blocks, commands, section

from melanoma_pipelines import cli


@pytest.fixture
def runs(two_pipeline_runs: dict, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", two_pipeline_runs["uri"])
    return two_pipeline_runs


def test_two_runs_differing_in_one_option_get_the_table_the_verdict_and_the_page(runs, capsys) -> None:
    base, changed = runs["base"], runs["changed"]
    assert cli.main(["compare", base.info.run_name, changed.info.run_id]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()

    assert any(line.split()[:3] == ["stage2_lr", "1e-05", "3e-05"] for line in lines), out
    for label, run in (("A", base), ("B", changed)):
        m = run.data.metrics
        assert (
            f"{m['test/auc_roc']:.3f} [{m['test/auc_roc_ci_low']:.3f}, {m['test/auc_roc_ci_high']:.3f}]"
            in out
        )
        assert any(line.split()[:2] == [label, run.info.run_id[:12]] for line in lines)
    auc = next(line for line in lines if line.split()[:1] == ["auc_roc"])
    assert len(auc.split("[")) == 4  # A's interval, B's, the paired difference's
    n_test = int(float(base.data.params["split/test_images"]))
    assert f"test set: B vs A: the same {n_test} test images" in out
    verdict = next(line for line in lines if line.startswith("verdict: "))
    assert "AUC" in verdict and (
        "better" in verdict or "worse" in verdict or "cannot be told apart" in verdict
    )

    page = f"compare/A-{base.info.run_id[:8]}_vs_B-{changed.info.run_id[:8]}.html"
    assert f"logged on run B (the newest): {page}" in out
    client = MlflowClient(runs["uri"])
    text = Path(client.download_artifacts(changed.info.run_id, page)).read_text(encoding="utf-8")
    assert verdict.removeprefix("verdict: ").split(";")[0].replace("'", "&#x27;") in text
    assert "stage2_lr" in text and "<script" not in text


def test_json_for_scripts(runs, capsys) -> None:
    assert cli.main(["compare", "--last", "2", "--json", "--no-log"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in data["runs"]] == [runs["base"].info.run_id, runs["changed"].info.run_id]
    assert data["params"]["stage2_lr"] == {"A": "1e-05", "B": "3e-05"}
    (pairing,) = data["pairings"]
    assert pairing["paired"] and pairing["n_images"] == data["runs"][0]["n_test"]
    auc = pairing["differences"]["auc_roc"]
    b, a = (data["metrics"]["auc_roc"][x]["value"] for x in "BA")
    assert auc["delta"] == pytest.approx(b - a) and auc["ci_low"] <= auc["ci_high"]
    assert data["logged"] is None and "compare-runs" in data["compare_page"]


def _documented_compare_commands(name: str, heading: str, runs: dict) -> list[list[str]]:
    """The ``melanoma-mlops compare`` lines of a documented block as argv, placeholders filled:
    RUN_A/RUN_B are the two runs' names, ``[RUN_C ...]`` (more runs) is left out."""
    body = section((ROOT / name).read_text(), heading)
    lines = [c for _, code in blocks(body) for c in commands(code) if "melanoma-mlops compare" in c]
    fill = {"RUN_A": runs["base"].info.run_name, "RUN_B": runs["changed"].info.run_name}
    argvs = []
    for line in lines:
        words = shlex.split(line.split("#")[0])
        words = words[words.index(next(w for w in words if w.endswith("melanoma-mlops"))) + 1 :]
        argvs.append([fill.get(w, w) for w in words if w not in ("[RUN_C", "...]")])
    assert argvs, f"{name}: '{heading}' shows no compare command"
    return argvs


def test_the_documented_commands_run_as_written(runs, capsys) -> None:
    """README journey 2 and docs/compare.md (tests/readme_blocks.py NOT_RUN: a second demo run is
    too long for the README test): the second run changes what the fixture's second run changes,
    and every compare line shown runs on the two runs and says what the docs say it says."""
    body = section(README.read_text(), "2. Compare runs")
    (run_line,) = [c for _, code in blocks(body) for c in commands(code) if "melanoma-mlops run" in c]
    assert shlex.split(run_line.split("#")[0])[2:] == runs["changed_option"]
    shown = [
        *_documented_compare_commands("README.md", "2. Compare runs", runs),
        *_documented_compare_commands("docs/compare.md", "Which run is better", runs),
    ]
    for argv in shown:
        assert cli.main(argv) == 0, argv
        out = capsys.readouterr().out
        if "--json" in argv:
            assert json.loads(out)["pairings"][0]["verdict"], argv
        else:
            assert "what differs (params):" in out and "\nverdict: B " in out, (argv, out)
