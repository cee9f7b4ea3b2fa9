"""``melanoma-mlops evaluate`` on the version the session's tiny run registered: an external set of
fresh images plus planted copies of the run's own images (two byte for byte, one resized and
recompressed) records its own run, leaves out exactly the planted copies, and tags the version;
bad input is refused with an ``error:`` line and no orphan run, a refused overlap ends its run FAILED."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import readme_blocks
from local_store import in_local_store
from mlflow.tracking import MlflowClient
from PIL import Image
from tiny_run import TinyRun

from melanoma_mlops.data import demo
from melanoma_mlops.registry import external as registry_external
from melanoma_pipelines import cli

EXPERIMENT = "melanoma-external-validation"


@pytest.fixture(scope="module")
def store_and_data(
    tiny_run: TinyRun, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, set[str]]:
    """A copy of the tiny run's folder (evaluate writes tags: other tests only read the original) and
    an external set in the folder layout with the planted copies; their file names."""
    assert tiny_run.code == 0
    root = tmp_path_factory.mktemp("external")
    work = Path(shutil.copytree(tiny_run.work, root / "work"))
    data = work / "clinic2"  # where docs/evaluation.md's command reads it
    demo.generate(data, n=24, size=64, seed=7, layout="folder")
    shutil.rmtree(data / "masks", ignore_errors=True)
    own = sorted((tiny_run.work / "data" / "malignant").glob("*.png")) + sorted(
        (tiny_run.work / "data" / "benign").glob("*.png")
    )
    planted = {"copy-a.png", "copy-b.png", "near-c.jpg"}
    shutil.copyfile(own[0], data / "malignant" / "copy-a.png")
    shutil.copyfile(own[-1], data / "benign" / "copy-b.png")
    with Image.open(own[-2]) as im:  # another upload of the same photograph: smaller, recompressed
        im.convert("RGB").resize((56, 56), Image.Resampling.LANCZOS).save(
            data / "benign" / "near-c.jpg", quality=90
        )
    rows = [  # a manifest with subgroup columns: what the figures are sliced by
        {
            "image_path": f"{image.parent.name}/{image.name}",
            "label": image.parent.name,
            "sex": ("female", "male")[k % 2],
        }
        for k, image in enumerate(sorted(data.glob("*/*.*")))
    ]
    pd.DataFrame(rows).to_csv(data / "labels.csv", index=False)
    return work, data, planted


def _documented_command() -> list[str]:
    """docs/evaluation.md's evaluate command, as written (argv after the program)."""
    heading = "External validation: `melanoma-mlops evaluate`"
    return readme_blocks.documented_argv("docs/evaluation.md", heading)


def _runs(uri: str) -> list:
    exp = MlflowClient(uri).get_experiment_by_name(EXPERIMENT)
    return [] if exp is None else MlflowClient(uri).search_runs([exp.experiment_id])


def test_bad_input_is_refused_without_an_orphan_run(store_and_data, capsys) -> None:
    work, data, _ = store_and_data
    with in_local_store(work) as uri:
        assert cli.main(["evaluate", "--data", str(data / "missing"), "--name", "x"]) != 0
        assert "error: --data" in capsys.readouterr().err
        code = cli.main(
            ["evaluate", "--model-uri", "models:/nope@champion", "--data", str(data), "--name", "x"]
        )
        assert (
            code != 0
            and "error: --model-uri models:/nope@champion: no such registered version"
            in capsys.readouterr().err
        )
        assert _runs(uri) == []


def test_evaluate_leaves_out_exactly_the_planted_copies_and_tags_the_version(store_and_data, capsys) -> None:
    work, data, planted = store_and_data
    model = "models:/melanoma-resnet50/1"
    with in_local_store(work) as uri:
        # --on-overlap fail: refused, the run FAILED with the reason; nothing on the version
        assert (
            cli.main(
                ["evaluate", "--model-uri", model, "--data", str(data), "--name", "x", "--on-overlap", "fail"]
            )
            != 0
        )
        assert "copy images melanoma-resnet50 v1" in capsys.readouterr().err
        [failed] = _runs(uri)
        assert failed.info.status == "FAILED" and "copy images" in failed.data.tags["error"]
        client = MlflowClient(uri)
        client.set_registered_model_alias("melanoma-resnet50", "champion", "1")  # as `promote --force` would
        assert cli.main(_documented_command()) == 0
        out = capsys.readouterr().out
        assert "auc_roc" in out and "by subgroup (AUC and sensitivity, 95% CI" in out
        assert "  sex=female " in out
        assert "overlaps with the model's own images, left out (3;" in out  # and each named:
        assert all(f"  {name} " in out for name in planted), out
        run = next(r for r in _runs(uri) if r.info.status == "FINISHED")
        overlaps = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/data/overlaps.csv").splitlines()[1:]
        assert {Path(line.split(",")[0]).name for line in overlaps} == planted
        assert {line.split(",")[1] for line in overlaps} == {"exact", "near"}
        assert run.data.metrics["external/n"] == 24 and "external/auc_roc_ci_low" in run.data.metrics
        assert {"slice/sex.female/n", "slice/sex.male/n"} <= set(run.data.metrics)
        logged = {
            f.path for d in ("evaluation", "gradcam") for f in client.list_artifacts(run.info.run_id, d)
        }
        assert {"evaluation/reliability.png", "gradcam/gradcam_grid.png"} <= logged
        model_id = registry_external.logged_model_id(client.get_model_version("melanoma-resnet50", "1"))
        assert "external/auc_roc" in {m.key for m in client.get_logged_model(model_id).metrics}
        assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["clinic2"]
        mv = client.get_model_version("melanoma-resnet50", "1")
        assert mv.tags["external.clinic2.n"] == "24" and mv.tags["external.clinic2.overlaps_excluded"] == "3"
        assert mv.tags["external.clinic2.run_id"] == run.info.run_id
        assert "## External validation" in mv.description and "| clinic2 (" in mv.description


def test_the_external_validation_pipeline_runs_under_kfp_local(store_and_data, tmp_path: Path) -> None:
    """The compiled pipeline's function (one task: the same step) under kfp.local, as on a cluster."""
    from melanoma_mlops.config import RunConfig
    from melanoma_pipelines.external_dag import build_external_pipeline, external_arguments
    from melanoma_pipelines.local import execute, step_environment

    work, data, planted = store_and_data
    model = "models:/melanoma-resnet50/1"
    with in_local_store(work) as uri, step_environment():
        arguments = external_arguments(RunConfig(), model, str(data), "clinic2_kfp")
        task = execute(build_external_pipeline(), arguments, pipeline_root=tmp_path / "kfp")
        run = MlflowClient(uri).get_run(task.output)
        mv = MlflowClient(uri).get_model_version("melanoma-resnet50", "1")
    assert run.info.status == "FINISHED" and run.data.tags["external.name"] == "clinic2_kfp"
    assert run.data.metrics["data/overlaps"] == len(planted) and run.data.metrics["external/n"] == 24
    assert mv.tags["external.clinic2_kfp.run_id"] == run.info.run_id
